"""Models trained on interaction data (the agent's collaborative candidate sources)."""
