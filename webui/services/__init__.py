"""Services: the only code that touches the store, RQ and Redis. Views call them and render."""
