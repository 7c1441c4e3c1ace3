"""The OpenAI-compatible API (`POST /api/v1/chat/completions`, `POST /api/v1/embeddings`,
`GET /api/v1/models`, views in ai/api.py): any OpenAI SDK pointed at
`https://<host>/api/v1` with an Atrium API key as its key.

- serializers: request validation (OpenAI's shapes) and the documented response bodies;
- chat: a request mapped onto one gateway call, the answer onto `chat.completion`/chunks;
- streaming: server-sent events, ended by [DONE] only when the answer completed;
- embeddings: embeddings and the model list;
- errors: RFC 9457 problems carrying OpenAI's `error` object, for both kinds of client.
"""
