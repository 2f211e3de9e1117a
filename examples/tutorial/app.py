"""The Flask sessions tutorial's app, on server-side sessions.

Run it with ``make demo`` (or ``python examples/tutorial/app.py``), then open
http://localhost:5000/setsession, /getsession, /popsession and /getsession again.
The only change from the tutorial is the line ``ServerSession(app)``: the session now lives in
an SQLite file in this app's instance folder, and the browser holds only a signed session ID.
"""

import os

from flask import Flask, session

from flask_serversession import ServerSession

app = Flask(__name__)
app.secret_key = "xyz"  # the tutorial's key; use a long random one in a real app
ServerSession(app)


@app.route("/setsession")
def setsession() -> str:
    session["Username"] = "Admin"
    return "The session has been Set"


@app.route("/getsession")
def getsession() -> str:
    if "Username" in session:
        Username = session["Username"]  # the tutorial's name
        return f"Welcome {Username}"
    else:
        return "Welcome Anonymous"


@app.route("/popsession")
def popsession() -> str:
    session.pop("Username", None)
    return "Session Deleted"


if __name__ == "__main__":
    app.run(host="localhost", port=int(os.environ.get("PORT", "5000")))
