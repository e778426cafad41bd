"""What every test package shares, one concept a module: the scaled time unit (``timing``),
waiting for what must happen (``waiting``), the WebSocket client (``client``), received
frames and their predicates (``frames``), wire graphs (``graphs``), runs without a socket
(``hub``), free ports (``ports``), NodeTool's golden frames (``golden``), the protocol
schema check (``schema``), the OpenAPI check (``openapi``) and NodeTool workflow files
(``workflows``)."""
