"""Real photos and camera-like views from installed packages (no downloads): calibration, tests, eval."""
