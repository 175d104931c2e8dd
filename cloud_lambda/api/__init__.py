"""The HTTP API Lambda (API Gateway HTTP API, payload format 2.0): matches, devices, photo search."""
