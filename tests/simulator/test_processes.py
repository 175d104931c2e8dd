import socket

import redis

from simulator.stack.processes import MosquittoProcess, RedisProcess


def test_redis_starts_answers_and_stops(redis_server: RedisProcess) -> None:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    assert client.ping()
    redis_server.stop()
    assert not redis_server.running


def test_mosquitto_kill_and_restart_keeps_port(mosquitto: MosquittoProcess) -> None:
    port = mosquitto.port
    mosquitto.kill()
    assert not mosquitto.running
    mosquitto.start()
    assert mosquitto.port == port
    with socket.create_connection((mosquitto.host, port), timeout=1):
        pass


def test_redis_runs_from_a_folder_with_a_space(tmp_path) -> None:
    server = RedisProcess(workdir=tmp_path / "state dir" / "redis").start()
    try:
        assert redis.Redis(host=server.host, port=server.port).ping()
    finally:
        server.stop()
