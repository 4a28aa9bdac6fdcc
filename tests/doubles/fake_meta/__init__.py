"""Fake Meta for voicebridge tests: the Graph API calls endpoint, signed call
webhooks and a WhatsApp caller played by aiortc.

Modules:
  webhooks  -- Meta-shaped call webhook payloads, signing, an async sender
  graph_api -- an aiohttp server playing graph.facebook.com /<PNID>/calls
  caller    -- an aiortc peer that offers like WhatsApp and records what it hears
"""
