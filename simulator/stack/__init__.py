"""The local stand-ins for AWS: mosquitto, redis-server, the rule bridge, the API + web app."""
