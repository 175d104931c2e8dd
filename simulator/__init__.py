"""The laptop side: the device loop from a webcam/video/folder, the local stack, and the CLI hub."""
