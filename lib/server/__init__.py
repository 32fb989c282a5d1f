"""What the model server is and can do, asked of the server itself.

Parley talks to any OpenAI-compatible server, but each states its limits its own way.
`probe` identifies the server and holds the one request function every probe uses;
`window` finds a model's context window; `capabilities` finds which endpoints exist;
`tokenizer` counts tokens with the server's own tokenizer where it has one.
"""
