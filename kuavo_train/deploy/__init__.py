"""Deployment: turn a trained checkpoint into a self-contained folder for the robot PC (``kuavo-train export``)."""
