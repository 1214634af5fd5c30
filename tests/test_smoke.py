from helpers import auth, make_room, register


async def test_register_and_room_roundtrip(http):
    alice = await register(http, "Вася")
    bob = await register(http, "Петр 🚀")
    room = await make_room(http, alice, bob)
    response = await http.get(f"/v1/rooms/{room}", headers=auth(bob))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert [u["login"] for u in response.json()["users"]] == ["Вася", "Петр 🚀"]


async def test_in_process_client(app_client):
    response = await app_client.post("/v1/register", json={"login": "a", "password": "b"})
    assert response.status_code == 200
    assert len((await response.get_json())["session_id"]) == 40
