"""Peak memory of accepting an image: Parley's checks against a plain Pillow decode.

Three images: the largest a known model makes (3840x2160 RGB), the largest Parley accepts
(4096x4096 RGBA, `lib.images.MAX_IMAGE_PIXELS`), and the decompression bomb of issue 9
(a 13000x13000 RGB PNG of about 490 KB, `tests.fake_images.sparse_png`). Two paths handle
each, every run in a fresh interpreter, because a process's peak RSS never comes down:

- **plain Pillow**: what Parley did before the pixel limit: `Image.open(...).load()`,
  then a 512 px thumbnail (Pillow's own bomb check left to its default: a warning).
- **Parley**: `checked_image` (bytes and pixels from the header, then verify and
  decode) and `ImageStore.save` (file, thumbnail, row) into a temporary data directory.

Each figure is the growth of peak RSS over the interpreter's RSS once the image bytes
are in memory (one run each by default: peak memory hardly varies between runs, unlike
the seconds, printed for reference); the ratio is Parley's MB over plain Pillow's.

    .venv/bin/python bench/image_memory.py [--runs 3]     # ~1 min per run on 2 cores
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CASES = ("plain", "parley")


def picture(width: int, height: int, mode: str) -> bytes:
    """Gradients and noise, so it compresses like a picture (as bench/images_overhead.py)."""
    from PIL import Image

    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    bands = [gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    if mode == "RGBA":
        bands.append(gradient.transpose(Image.Transpose.FLIP_TOP_BOTTOM))
    buffer = io.BytesIO()
    Image.merge(mode, bands).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def images(folder: Path) -> dict[str, Path]:
    from tests.fake_images import sparse_png

    made = {
        "3840x2160 RGB (largest made)": picture(3840, 2160, "RGB"),
        "4096x4096 RGBA (largest accepted)": picture(4096, 4096, "RGBA"),
        "13000x13000 RGB bomb (refused)": sparse_png(13000, 13000, rgb=True),
    }
    paths = {}
    for i, (name, data) in enumerate(made.items()):
        paths[name] = folder / f"image-{i}.png"
        paths[name].write_bytes(data)
    return paths


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss over fork and exec, so a child would start at its parent's peak."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: ru_maxrss is in bytes on macOS
        scale = 2**20 if sys.platform == "darwin" else 2**10
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def child(case: str, path: Path) -> None:
    """Run one case on one image; print peak RSS growth (MB) and seconds."""
    from PIL import Image

    from lib.errors import ProviderError
    from lib.gallery import ImageStore
    from lib.image_models import default_request
    from lib.images import GenerationResult, checked_image
    from lib.store.backend import open_backend

    data = path.read_bytes()
    before = peak_rss_mb()
    start = time.perf_counter()
    outcome = "accepted"
    if case == "plain":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                img.thumbnail((512, 512))
    else:
        try:
            image = checked_image(data)
            with tempfile.TemporaryDirectory() as tmp:
                result = GenerationResult(default_request("x", "m"), [image], None, None, 1.0)
                ImageStore(open_backend(Path(tmp)), "bench").save(result)
        except ProviderError:
            outcome = "refused"
    seconds = time.perf_counter() - start
    growth = peak_rss_mb() - before
    print(f"{growth:.1f} {seconds:.3f} {outcome}")


def measure(case: str, path: Path) -> tuple[float, float, str]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    growth, seconds, outcome = done.stdout.split()
    return float(growth), float(seconds), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        paths = images(Path(tmp))
        print(f"peak RSS growth, median of {args.runs} fresh interpreters per figure")
        print(f"{'image':36} {'plain Pillow':>16} {'Parley':>24} {'ratio':>6}")
        for name, path in paths.items():
            runs = {case: [] for case in CASES}
            for _ in range(args.runs):
                for case in CASES:  # interleaved, so machine drift hits both alike
                    runs[case].append(measure(case, path))
            plain, ours = (_median(runs[case]) for case in CASES)
            print(
                f"{name:36} {plain[0]:7.0f} MB {plain[1]:5.2f} s"
                f" {ours[0]:7.0f} MB {ours[1]:5.2f} s {ours[2]:>8}"
                f" {ours[0] / max(plain[0], 1):6.2f}"
            )
        size = paths["13000x13000 RGB bomb (refused)"].stat().st_size
        print(f"(the bomb is {size / 1024:.0f} KB of PNG; ratio = Parley MB / plain Pillow MB)")


def _median(runs: list[tuple[float, float, str]]) -> tuple[float, float, str]:
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        runs[0][2],
    )


if __name__ == "__main__":
    main()
