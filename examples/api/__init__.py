"""The API example (a package only so that tools tell its app.py from the other examples')."""
