"""The predictor service: a Flask app served by gunicorn."""
