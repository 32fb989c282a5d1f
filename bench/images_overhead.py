"""What Parley's image path adds per image, and whether the gallery stays fast as it grows.

1. Per image, on a realistic 1536x1024 PNG (~3 MB, as a GPT image model returns): the
   baseline is what a minimal app does with a `b64_json` answer (decode base64, write the
   file); Parley also decodes the pixels with Pillow to refuse broken images, writes a
   512 px WebP thumbnail and records a SQLite row. Rounds alternate (ABAB) so machine drift
   hits both alike. The figure to judge is the added milliseconds against the 20-60 s an
   image model takes to answer.
2. The gallery's first page (24 tiles, newest first, optionally searched) with 24 images
   stored against 2,000: the ratio shows whether listing grows with the gallery.
3. Bytes the gallery page hands the browser for 24 tiles: thumbnails against originals.

    .venv/bin/python bench/images_overhead.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from lib.gallery import ImageStore  # noqa: E402
from lib.image_models import default_request  # noqa: E402
from lib.images import GenerationResult, Usage, checked_image  # noqa: E402
from lib.store.backend import open_backend  # noqa: E402

WORKSPACE = "bench"


def realistic_png(seed: int) -> bytes:
    """A 1536x1024 PNG with smooth gradients and noise, so it compresses like a picture."""
    gradient = Image.linear_gradient("L").resize((1536, 1024))
    noise = Image.effect_noise((1536, 1024), 40 + seed)
    img = Image.merge("RGB", (gradient, noise, gradient.rotate(90, expand=False)))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def baseline(b64: str, folder: Path, i: int) -> None:
    (folder / f"raw-{i}.png").write_bytes(base64.b64decode(b64))


def parley(b64: str, store: ImageStore, i: int) -> None:
    image = checked_image(base64.b64decode(b64))
    request = default_request(f"bench image {i}", "gpt-image-2")
    store.save(GenerationResult(request, [image], Usage(10, 6240), 0.2, 30.0))


def per_image(rounds: int, root: Path) -> None:
    b64 = base64.b64encode(realistic_png(0)).decode()
    store = ImageStore(open_backend(root / "parley"), WORKSPACE)
    raw = root / "raw"
    raw.mkdir()
    parley(b64, store, -1)  # warm-up: migrations, imports
    times: dict[str, list[float]] = {"baseline": [], "parley": []}
    for i in range(rounds):
        start = time.perf_counter()
        baseline(b64, raw, i)
        middle = time.perf_counter()
        parley(b64, store, i)
        times["baseline"].append(middle - start)
        times["parley"].append(time.perf_counter() - middle)
    base, ours = (statistics.median(times[k]) * 1000 for k in ("baseline", "parley"))
    size = len(b64) * 3 // 4 / 1e6
    print(f"per image ({size:.1f} MB PNG, median of {rounds}):")
    print(f"  baseline (b64 decode + write): {base:7.1f} ms")
    print(f"  parley (+ decode check, thumbnail, row): {ours:7.1f} ms")
    print(f"  added: {ours - base:.1f} ms = {(ours - base) / 300:.2f}% of a 30 s generation")
    print(f"  ratio: {ours / base:.2f} (parley / baseline)")


def listing(root: Path) -> None:
    small_png = io.BytesIO()
    Image.new("RGB", (32, 32), (9, 9, 9)).save(small_png, format="PNG")
    image = checked_image(small_png.getvalue())
    timings = {}
    for count in (24, 2000):
        store = ImageStore(open_backend(root / f"list-{count}"), WORKSPACE)
        for i in range(count):
            request = default_request(f"picture {i} of a {'fox' if i % 7 else 'heron'}", "m")
            store.save(GenerationResult(request, [image], None, None, 1.0))
        runs = []
        for _ in range(30):
            start = time.perf_counter()
            store.list(limit=24)
            store.list(query="heron", limit=24)
            store.count()
            runs.append(time.perf_counter() - start)
        timings[count] = statistics.median(runs) * 1000
    print("gallery first page + search + count (median of 30):")
    print(f"  24 images: {timings[24]:.2f} ms; 2,000 images: {timings[2000]:.2f} ms")
    print(f"  ratio: {timings[2000] / timings[24]:.2f} (2,000 / 24)")


def payload(root: Path) -> None:
    store = ImageStore(open_backend(root / "payload"), WORKSPACE)
    png = realistic_png(1)
    request = default_request("payload", "gpt-image-2")
    saved = [
        store.save(GenerationResult(request, [checked_image(png)], None, None, 1.0))[0]
        for _ in range(24)
    ]
    thumbs = sum(len(store.preview(i)) for i in saved)
    originals = sum(len(store.read(i)) for i in saved)
    print("gallery page of 24 tiles, bytes to the browser:")
    print(f"  originals: {originals / 1e6:.1f} MB; thumbnails: {thumbs / 1e6:.2f} MB")
    print(f"  ratio: {thumbs / originals:.3f} (thumbnails / originals)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        per_image(args.rounds, Path(tmp))
        listing(Path(tmp))
        payload(Path(tmp))


if __name__ == "__main__":
    main()
