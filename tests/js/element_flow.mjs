// Two people using Axon through matrix-js-sdk, Element's engine with its Rust
// crypto, in an encrypted room, the way
// Element does. Run by tests/e2e/js_sdk.rs:
//   node element_flow.mjs <base_url> <alice_id> <bob_id> <password> <png_path>
// Prints one line per step; exits 1 at the first step that fails.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { readFileSync } from "node:fs";

logger.setLevel("error");
const [baseUrl, aliceId, bobId, password, pngPath] = process.argv.slice(2);
const STEP_TIMEOUT_MS = 15000;
// The whole run stops itself, whatever hangs.
setTimeout(() => {
    console.error("FAIL: the flow took longer than 120 s");
    process.exit(1);
}, 120000).unref();

let current = "start";
function step(name) {
    current = name;
    console.log(`step: ${name}`);
}

/** Resolves once `check()` is true, re-checking on every event of
 * `emitter` named, and after every sync (a new room's first events are
 * emitted before the client re-emits that room's events). */
function until(emitter, named, check, what) {
    // Encrypted events are decrypted after they arrive: look again then.
    const events = [...named, sdk.ClientEvent.Sync, sdk.MatrixEventEvent.Decrypted];
    return new Promise((resolve, reject) => {
        const done = () => {
            let value;
            try {
                value = check();
            } catch (e) {
                return;
            }
            if (value) {
                cleanup();
                resolve(value);
            }
        };
        const timer = setTimeout(() => {
            cleanup();
            reject(new Error(`timed out waiting for ${what}`));
        }, STEP_TIMEOUT_MS);
        const cleanup = () => {
            clearTimeout(timer);
            for (const e of events) emitter.removeListener(e, done);
        };
        for (const e of events) emitter.on(e, done);
        done();
    });
}

function assert(condition, message) {
    if (!condition) throw new Error(`assertion failed: ${message}`);
}

// AXON_JS_TRACE=file appends every /sync answer to `file`, for debugging.
import { appendFileSync } from "node:fs";
const trace = process.env.AXON_JS_TRACE;
async function tracedFetch(url, init) {
    const response = await fetch(url, init);
    if (trace && String(url).includes("/sync")) {
        const text = await response.clone().text();
        appendFileSync(trace, `${url}\n${text}\n`);
    }
    return response;
}

async function login(user, opts = {}) {
    const anonymous = sdk.createClient({ baseUrl });
    const session = await anonymous.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
        initial_device_display_name: "Element (matrix-js-sdk)",
    });
    return sdk.createClient({
        baseUrl,
        accessToken: session.access_token,
        userId: session.user_id,
        deviceId: session.device_id,
        timelineSupport: true,
        fetchFn: tracedFetch,
        ...opts,
    });
}

async function start(client, opts = {}) {
    const prepared = until(client, [sdk.ClientEvent.Sync], () => client.getSyncState() === "PREPARED", "PREPARED");
    const failed = new Promise((_, reject) =>
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === "ERROR") reject(new Error(`sync error: ${data?.error}`));
        }),
    );
    // As Element starts it: its Rust crypto (in memory here), members
    // lazily loaded, threads on.
    await client.initRustCrypto({ useIndexedDB: false });
    await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true, threadSupport: true, ...opts });
    await Promise.race([prepared, failed]);
}

const texts = (room) =>
    room
        .getLiveTimeline()
        .getEvents()
        .filter((e) => e.getType() === "m.room.message" && !e.isRedacted() && !e.isRelation() && !e.isDecryptionFailure())
        .map((e) => e.getContent().body);

async function main() {
    step("start-up to PREPARED for both users");
    const alice = await login(aliceId);
    const bob = await login(bobId);
    await start(alice);
    await start(bob);
    const versions = await alice.getVersions();
    assert(versions.versions.includes(sdk.MINIMUM_MATRIX_VERSION), `versions ${JSON.stringify(versions)}`);

    step("push rules fetched");
    const rules = alice.pushRules;
    assert(rules?.global?.override?.some((r) => r.rule_id === ".m.rule.master"), "server-default push rules");
    assert(rules.global.underride.some((r) => r.rule_id === ".m.rule.message"), ".m.rule.message");

    step("encrypted private room with name and topic, invite and join seen by both");
    const { room_id: roomId } = await alice.createRoom({
        preset: sdk.Preset.PrivateChat,
        visibility: sdk.Visibility.Private,
        name: "Axon test room",
        topic: "Testing with matrix-js-sdk",
        invite: [bobId],
        // As Element creates a private room: encrypted from the start.
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await until(bob, [sdk.RoomEvent.MyMembership], () => bob.getRoom(roomId)?.getMyMembership() === "invite", "bob's invite");
    await bob.joinRoom(roomId);
    const aliceRoom = await until(alice, [sdk.RoomStateEvent.Members, sdk.ClientEvent.Room], () => {
        const room = alice.getRoom(roomId);
        return room?.getMember(bobId)?.membership === "join" && room;
    }, "bob joined, on alice's side");
    const bobRoom = await until(bob, [sdk.RoomEvent.Name, sdk.RoomEvent.Timeline], () => {
        const room = bob.getRoom(roomId);
        return room?.name === "Axon test room" && room;
    }, "room name on bob's side");
    const topic = bobRoom.currentState.getStateEvents("m.room.topic", "")?.getContent().topic;
    assert(topic === "Testing with matrix-js-sdk", `topic ${topic}`);
    assert(bobRoom.getJoinRule() === "invite", `join rule ${bobRoom.getJoinRule()}`);
    assert(bobRoom.hasEncryptionStateEvent(), "the room is encrypted on bob's side");

    step("five messages received in order");
    const sent = [];
    for (let i = 1; i <= 5; i++) {
        sent.push((await alice.sendTextMessage(roomId, `message ${i}`)).event_id);
    }
    await until(bob, [sdk.RoomEvent.Timeline], () => texts(bobRoom).length >= 5, "five messages on bob's side");
    assert(
        JSON.stringify(texts(bobRoom)) === JSON.stringify(["message 1", "message 2", "message 3", "message 4", "message 5"]),
        `order ${JSON.stringify(texts(bobRoom))}`,
    );
    const lastEvent = bobRoom.findEventById(sent[4]);
    assert(lastEvent.getWireType() === "m.room.encrypted" && lastEvent.isEncrypted(), "sent encrypted, decrypted by bob");

    step("read receipt seen by the other user");
    await bob.sendReadReceipt(lastEvent);
    await until(alice, [sdk.RoomEvent.Receipt], () => aliceRoom.getEventReadUpTo(bobId) === sent[4], "bob's receipt on alice's side");

    step("read marker kept as room account data");
    await bob.setRoomReadMarkers(roomId, sent[3]);
    await until(bob, [sdk.RoomEvent.AccountData], () => bobRoom.getAccountData("m.fully_read")?.getContent().event_id === sent[3], "m.fully_read");

    step("typing notification seen by the other user");
    await alice.sendTyping(roomId, true, 30000);
    await until(bob, [sdk.RoomMemberEvent.Typing], () => bobRoom.getMember(aliceId)?.typing === true, "alice typing");
    await alice.sendTyping(roomId, false);
    await until(bob, [sdk.RoomMemberEvent.Typing], () => bobRoom.getMember(aliceId)?.typing === false, "alice stopped typing");

    step("an edit shown as applied");
    const edit = await alice.sendMessage(roomId, {
        msgtype: "m.text",
        body: "* message 2 (edited)",
        "m.new_content": { msgtype: "m.text", body: "message 2 (edited)" },
        "m.relates_to": { rel_type: "m.replace", event_id: sent[1] },
    });
    await until(bob, [sdk.RoomEvent.Timeline, sdk.MatrixEventEvent.Replaced], () => {
        const original = bobRoom.findEventById(sent[1]);
        return original?.replacingEventId() === edit.event_id && original.getContent().body === "message 2 (edited)";
    }, "the edit applied on bob's side");

    step("a redaction observed");
    await alice.redactEvent(roomId, sent[2]);
    await until(bob, [sdk.RoomEvent.Redaction, sdk.RoomEvent.Timeline], () => bobRoom.findEventById(sent[2])?.isRedacted(), "redacted on bob's side");
    assert(bobRoom.findEventById(sent[2]).getContent().body === undefined, "redacted content is gone");

    step("display name and avatar change");
    const avatar = await alice.uploadContent(readFileSync(pngPath), { type: "image/png", name: "avatar.png" });
    await alice.setDisplayName("Alice Liddell");
    await alice.setAvatarUrl(avatar.content_uri);
    await until(bob, [sdk.RoomMemberEvent.Name, sdk.RoomStateEvent.Members, sdk.RoomEvent.Timeline], () => {
        const member = bobRoom.getMember(aliceId);
        return member?.name === "Alice Liddell" && member.getMxcAvatarUrl() === avatar.content_uri;
    }, "alice's new name and avatar on bob's side");

    step("image upload with thumbnail and authenticated download");
    const png = readFileSync(pngPath);
    const upload = await alice.uploadContent(png, { type: "image/png", name: "picture.png" });
    const imageEvent = await alice.sendMessage(roomId, {
        msgtype: "m.image",
        body: "picture.png",
        url: upload.content_uri,
        info: { mimetype: "image/png", size: png.length, w: 64, h: 48 },
    });
    const mxc = await until(bob, [sdk.RoomEvent.Timeline], () => bobRoom.findEventById(imageEvent.event_id)?.getContent().url, "the image on bob's side, decrypted");
    const auth = { headers: { Authorization: `Bearer ${bob.getAccessToken()}` } };
    const thumbUrl = bob.mxcUrlToHttp(mxc, 32, 32, "crop", false, true, true);
    assert(thumbUrl.includes("/_matrix/client/v1/media/thumbnail/"), `authenticated thumbnail URL ${thumbUrl}`);
    const thumb = await fetch(thumbUrl, auth);
    assert(thumb.status === 200, `thumbnail status ${thumb.status}`);
    assert(thumb.headers.get("content-type") === "image/png", `thumbnail type ${thumb.headers.get("content-type")}`);
    const thumbBytes = Buffer.from(await thumb.arrayBuffer());
    assert(thumbBytes.subarray(1, 4).toString() === "PNG", "thumbnail is a PNG");
    assert(thumbBytes.readUInt32BE(16) === 32 && thumbBytes.readUInt32BE(20) === 32, "thumbnail is 32×32");
    const downloadUrl = bob.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
    assert(downloadUrl.includes("/_matrix/client/v1/media/download/"), `authenticated download URL ${downloadUrl}`);
    const download = await fetch(downloadUrl, auth);
    assert(download.status === 200, `download status ${download.status}`);
    assert(Buffer.from(await download.arrayBuffer()).equals(png), "downloaded bytes are the upload");
    assert((await fetch(downloadUrl)).status === 401, "download without a token is refused");

    step("scrolling back from a short initial sync");
    const bobPhone = await login(bobId);
    await start(bobPhone, { initialSyncLimit: 2 });
    const phoneRoom = bobPhone.getRoom(roomId);
    // A new device has no keys for what was said before it existed (no
    // key backup in this flow): it reaches the first message, encrypted.
    for (let i = 0; i < 10 && !phoneRoom.findEventById(sent[0]); i++) {
        await bobPhone.scrollback(phoneRoom, 10);
    }
    assert(phoneRoom.findEventById(sent[0])?.getWireType() === "m.room.encrypted", "scrolled back to the first message");

    step("jumping to an event with /context");
    const timeline = await bob.getEventTimeline(bobRoom.getUnfilteredTimelineSet(), sent[0]);
    assert(timeline.getEvents().some((e) => e.getId() === sent[0]), "the event is in its timeline");
    assert(timeline.getEvents().some((e) => e.getId() === sent[1]), "with what came after it");

    step("account data and a room tag round-trip through sync");
    await alice.setAccountData("org.axon.test.settings", { theme: "dark" });
    await until(alice, [sdk.ClientEvent.AccountData], () => alice.getAccountData("org.axon.test.settings")?.getContent().theme === "dark", "account data");
    await alice.setRoomTag(roomId, "m.favourite", { order: 0.5 });
    await until(alice, [sdk.RoomEvent.Tags], () => aliceRoom.tags["m.favourite"]?.order === 0.5, "the room tag");

    step("every message decrypted on the other side");
    const undecrypted = bobRoom.getLiveTimeline().getEvents().filter((e) => e.isDecryptionFailure());
    assert(undecrypted.length === 0, `${undecrypted.length} events bob could not decrypt`);
    const encrypted = bobRoom.getLiveTimeline().getEvents().filter((e) => e.getWireType() === "m.room.encrypted");
    assert(encrypted.length >= 7, `messages arrived encrypted (${encrypted.length})`);

    step("leaving, seen by the other user");
    await bob.leave(roomId);
    await until(alice, [sdk.RoomStateEvent.Members, sdk.RoomEvent.Timeline], () => aliceRoom.getMember(bobId)?.membership === "leave", "bob left, on alice's side");

    step("logging out");
    const token = alice.getAccessToken();
    await alice.logout(true);
    const whoami = await fetch(`${baseUrl}/_matrix/client/v3/account/whoami`, { headers: { Authorization: `Bearer ${token}` } });
    assert(whoami.status === 401, `whoami after logout ${whoami.status}`);

    bob.stopClient();
    bobPhone.stopClient();
    console.log("ok: every step passed");
}

main().then(
    () => process.exit(0),
    (e) => {
        console.error(`FAIL at "${current}": ${e?.stack ?? e}`);
        if (e?.data) console.error(`  server answered: ${JSON.stringify(e.data)}`);
        process.exit(1);
    },
);
