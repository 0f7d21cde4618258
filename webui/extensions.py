"""Extensions, created unbound here and bound to the app in create_app."""

from __future__ import annotations

from flask_smorest import Api
from flask_socketio import SocketIO

api = Api()  # its JSON errors serve /api/ only: webui.views._http_error
socketio = SocketIO()
