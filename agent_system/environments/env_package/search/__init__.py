"""Search-QA environment: retrieval (BM25 / dense) over a passage corpus, served over HTTP or in-process.

Modules, bottom-up: ``answers`` (EM reward), ``classifier`` (question -> skill type), ``projection``
(model text -> action), ``corpus`` / ``encoder`` / ``index`` / ``retriever`` (the retriever core shared by
the server in ``examples/search/retriever`` and the in-process ``local:`` backend), ``api`` (the
``/retrieve`` wire format), ``client`` (HTTP + local backends) and ``envs`` (batched episodes).
"""
