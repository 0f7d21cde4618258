"""Extensions, created unbound here and bound to the app in create_app."""

from __future__ import annotations

from flask import Response, request
from flask_smorest import Api as _Api
from flask_socketio import SocketIO
from werkzeug.exceptions import HTTPException


class Api(_Api):
    """flask-smorest's API, whose JSON error pages apply to /api/ only (pages keep HTML errors)."""

    def handle_http_exception(self, error: HTTPException) -> Response | HTTPException:
        if request.path.startswith("/api/"):
            return super().handle_http_exception(error)
        return error


api = Api()
socketio = SocketIO()
