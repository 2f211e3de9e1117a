"""The accounts example (a package only so that tools tell its app.py from the tutorial's)."""
