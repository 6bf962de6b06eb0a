"""Dialog: the declarative flow engine, its offline NLU, and (later) the LLM agent."""
