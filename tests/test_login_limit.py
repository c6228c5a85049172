"""Failed logins are limited per client and overall; a locked-out client learns when to retry."""

from fastapi import FastAPI, Form, HTTPException
from fastapi.testclient import TestClient

from webui.login_limit import LoginLimiter


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def login_app(clock, **limits):
    app = FastAPI()

    @app.post("/login")
    def login(username: str = Form(), password: str = Form()):
        if password != "right":
            raise HTTPException(status_code=400, detail="Incorrect credentials.")
        return {"success": True}

    app.add_middleware(LoginLimiter, clock=clock, **limits)
    return app


def attempt(client, password, forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post("/login", data={"username": "alice", "password": password}, headers=headers)


def test_five_failures_lock_the_client_out_for_the_rest_of_the_minute():
    clock = Clock()
    client = TestClient(login_app(clock))
    assert [attempt(client, "wrong").status_code for _ in range(5)] == [400] * 5
    locked = attempt(client, "right")  # even the right password waits: guessing must not be rewarded
    assert locked.status_code == 429 and locked.headers["retry-after"] == "60"
    assert locked.json()["detail"] == "Too many failed logins; try again in 60 s."
    clock.now += 59.5
    assert attempt(client, "right").headers["retry-after"] == "1"
    clock.now += 1
    assert attempt(client, "right").status_code == 200


def test_successes_do_not_count_and_other_clients_are_not_locked_out_by_one():
    clock = Clock()
    client = TestClient(login_app(clock, overall=100))
    for _ in range(20):
        assert attempt(client, "right").status_code == 200
    for _ in range(5):
        attempt(client, "wrong", forwarded="203.0.113.7")
    assert attempt(client, "wrong", forwarded="203.0.113.7").status_code == 429
    assert attempt(client, "right", forwarded="198.51.100.2").status_code == 200


def test_forged_forwarded_addresses_still_hit_the_overall_limit():
    clock = Clock()
    client = TestClient(login_app(clock, overall=12))
    codes = [attempt(client, "wrong", forwarded=f"10.0.0.{i}").status_code for i in range(13)]
    assert codes == [400] * 12 + [429]
