from polymodal.cli import app

app()
