from messaging_testkit import Cluster, direct, send


async def test_smoke(cluster: Cluster) -> None:
    inst = await cluster.start()
    await inst.serve()
    alice, bob = await cluster.people("alice", "bob")
    chat = await direct(inst, alice, bob)
    bws = await inst.connect(bob)
    msg = await send(inst, alice, chat, "hello @bob")
    got = await bws.wait_for("message")
    assert got[0]["message"]["id"] == msg["id"]
    page = await inst.client.get(f"/api/v1/chats/{chat}/messages", headers=bob.headers)
    assert page.status_code == 200, page.text
    assert [m["body"] for m in page.json()["items"]] == ["hello @bob"]
