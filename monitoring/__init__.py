"""The drift exporter and the drift computation it shares with the reports."""
