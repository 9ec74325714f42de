"""The web page (FastAPI, server-rendered): plans, pictures, DVH and the Export block."""
