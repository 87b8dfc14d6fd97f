"""How people and programs reach the agent: the `tailor` command, the HTTP API, the Gradio
UI, the LangChain tool, and the session store they share."""
