"""A real Matrix client's conversation (matrix-nio), the same wherever the homeserver runs: the e2e suite
drives it through the router on loopback, the node tier through the router's Service on a real node.

`full_exchange` touches one class per step (rooms and messages, typing, receipts, to-device, presence,
media), so the access logs afterwards show which process served each kind of request.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from nio import (
    AsyncClient,
    PresenceEvent,
    ReceiptEvent,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
    ToDeviceMessage,
    TypingNoticeEvent,
    UploadResponse,
)


async def sync_until(client: AsyncClient, what: str, found: Any, timeout: float = 30) -> SyncResponse:
    """Sync until `found(response)` is true; fail naming what never arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.sync(timeout=2000)
        assert isinstance(response, SyncResponse), response
        if found(response):
            return response
    raise AssertionError(f"{client.user_id} never saw {what}")


def texts(response: SyncResponse, room_id: str) -> set[str]:
    room = response.rooms.join.get(room_id)
    return set() if room is None else {e.source.get("content", {}).get("body", "") for e in room.timeline.events}


def ephemeral(response: SyncResponse, room_id: str) -> list[Any]:
    room = response.rooms.join.get(room_id)
    return [] if room is None else list(room.ephemeral)


async def client_for(base: str, account: dict[str, Any]) -> AsyncClient:
    client = AsyncClient(base, account["user_id"])
    client.restore_login(account["user_id"], account["device_id"], account["access_token"])
    await sync_until(client, "an initial sync", lambda r: True)
    return client


async def converse(alice: AsyncClient, bob: AsyncClient, room_id: str, text: str) -> None:
    """Alice says something, Bob sees it; Bob answers, Alice sees it."""
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    assert isinstance(sent, RoomSendResponse), sent
    await sync_until(bob, f"'{text}'", lambda r: text in texts(r, room_id))
    reply = f"re: {text}"
    sent = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": reply})
    assert isinstance(sent, RoomSendResponse), sent
    await sync_until(alice, f"'{reply}'", lambda r: reply in texts(r, room_id))


async def new_room(alice: AsyncClient, bob: AsyncClient, name: str) -> str:
    created = await alice.room_create(name=name, invite=[bob.user_id])
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.join(created.room_id)
    assert getattr(joined, "room_id", None) == created.room_id, joined
    return str(created.room_id)


async def full_exchange(base: str, alice_account: dict[str, Any], bob_account: dict[str, Any]) -> dict[str, Any]:
    alice = await client_for(base, alice_account)
    bob = await client_for(base, bob_account)
    try:
        room_id = await new_room(alice, bob, "before")
        await converse(alice, bob, room_id, "hello bob")

        assert (await alice.room_typing(room_id, True, timeout=20000)).__class__.__name__ == "RoomTypingResponse"
        await sync_until(
            bob,
            "alice typing",
            lambda r: any(isinstance(e, TypingNoticeEvent) and alice.user_id in e.users for e in ephemeral(r, room_id)),
        )

        last = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "read me"})
        assert isinstance(last, RoomSendResponse), last
        receipt = await bob.update_receipt_marker(room_id, last.event_id)
        assert receipt.__class__.__name__ == "UpdateReceiptMarkerResponse", receipt
        await sync_until(
            alice,
            "bob's read receipt",
            lambda r: any(
                isinstance(e, ReceiptEvent)
                and any(x.user_id == bob.user_id and x.event_id == last.event_id for x in e.receipts)
                for e in ephemeral(r, room_id)
            ),
        )

        ping = {"nonce": secrets.token_hex(8)}
        message = ToDeviceMessage("org.example.e2e.ping", bob.user_id, bob.device_id, ping)
        assert (await alice.to_device(message)).__class__.__name__ == "ToDeviceResponse"
        await sync_until(
            bob, "alice's to-device message", lambda r: any(e.source.get("content") == ping for e in r.to_device_events)
        )

        status = f"busy {secrets.token_hex(4)}"
        assert (await alice.set_presence("online", status)).__class__.__name__ == "PresenceSetResponse"
        await sync_until(
            bob,
            "alice's presence",
            lambda r: any(
                isinstance(e, PresenceEvent) and e.user_id == alice.user_id and e.status_msg == status
                for e in r.presence_events
            ),
        )
        presence = await bob.get_presence(alice.user_id)
        assert getattr(presence, "status_msg", None) == status, presence

        payload = secrets.token_bytes(64 * 1024)
        uploaded, _ = await alice.upload(
            lambda *_: payload, "application/octet-stream", "blob.bin", filesize=len(payload)
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        downloaded = await bob.download(uploaded.content_uri)
        assert getattr(downloaded, "body", None) == payload, "media came back different"
        return {"room_id": room_id, "last_event": last.event_id}
    finally:
        await alice.close()
        await bob.close()
