"""Drift reports (Evidently HTML) and their index page, served by nginx."""
