"""The LangGraph agent: route -> tools in parallel -> synthesise -> verify (see docs/agent.md).

``agent.assistant.Assistant`` is the entry point for the CLI, reports and the UI. Nothing heavy
is imported here, so that ``litevlm --help`` stays instant.
"""
