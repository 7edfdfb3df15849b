"""One module per area; each exposes ``register(app)``. Keep imports here cheap."""
