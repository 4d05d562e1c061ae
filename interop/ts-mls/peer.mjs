// An MLS-mode Matrix member built on ts-mls and plain fetch, driven step by
// step by the Go interop test (interop/tsmls_test.go). It reads one JSON
// command a line on stdin and answers each with one JSON line on stdout:
// {"ok": true, ...results} or {"ok": false, "error": "..."}. Everything it
// sends to mlsserver it makes itself: the registration, the BasicCredential
// with the Matrix identity (SPEC-NOTES §9), key packages, commits with the
// CBOR federation map as authenticated data (SPEC-NOTES §3, encoded here by
// hand), application messages, and the Welcome it sends to a member it adds.
// Logs go to stderr.

import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import { XWing } from "@hpke/hybridkem-x-wing";
import { p256 } from "@noble/curves/nist.js";
import {
  createApplicationMessage,
  createCommit,
  decodeMlsMessage,
  decodeRequiredCapabilities,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processPrivateMessage,
} from "ts-mls";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { decodeCredential } from "ts-mls/credential.js";

// The suites SPEC-NOTES §1 accepts, by number.
const SUITES = {
  1: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
  2: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
  3: "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
  83: "MLS_256_XWING_AES256GCM_SHA512_Ed25519",
};
const ROOM_STATE_EXTENSION = 0xf6d0; // SPEC-NOTES §10
const COMMIT_TYPE = "m.mls.commit";
const PENDING_TYPE = "m.mls.pending_commit";
const ENCRYPTED_TYPE = "m.room.encrypted";
const ALG_PREFIX = "m.mls.v1.";

const log = (...a) => console.error("[ts-mls peer]", ...a);

// --- encodings -----------------------------------------------------------

const b64std = (b) => Buffer.from(b).toString("base64").replace(/=+$/, "");
const b64url = (b) => Buffer.from(b).toString("base64url");
const unb64 = (s) => new Uint8Array(Buffer.from(s, s.includes("-") || s.includes("_") ? "base64url" : "base64"));
const hex = (b) => Buffer.from(b).toString("hex");
const utf8 = (s) => new TextEncoder().encode(s);
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

// RFC 9420 §2.1.2 variable-length vector length.
function varint(n) {
  if (n < 1 << 6) return Uint8Array.of(n);
  if (n < 1 << 14) return Uint8Array.of(0x40 | (n >> 8), n & 0xff);
  if (n < 1 << 30) return Uint8Array.of(0x80 | (n >>> 24), (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
  throw new Error("vector too long");
}
// canonicalJSON is Matrix's canonical JSON of plain objects, arrays and
// strings: keys sorted, no whitespace.
function canonicalJSON(v) {
  if (Array.isArray(v)) return "[" + v.map(canonicalJSON).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonicalJSON(v[k])).join(",") + "}";
  }
  return JSON.stringify(v);
}
const opaque = (b) => concat(varint(b.length), b);
function readOpaque(b, o) {
  const first = b[o] >> 6;
  let n, h;
  if (first === 0) [n, h] = [b[o] & 0x3f, 1];
  else if (first === 1) [n, h] = [((b[o] & 0x3f) << 8) | b[o + 1], 2];
  else if (first === 2) [n, h] = [((b[o] & 0x3f) << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3], 4];
  else throw new Error("bad varint");
  if (o + h + n > b.length) throw new Error("opaque overruns its buffer");
  return [b.subarray(o + h, o + h + n), o + h + n];
}

// The Matrix identity of SPEC-NOTES §9:
// struct { opaque user_id<V>; opaque device_id<V>; opaque signature_key<V>; }
const encodeIdentity = (userId, deviceId, sigKey) => concat(opaque(utf8(userId)), opaque(utf8(deviceId)), opaque(sigKey));
function decodeIdentity(b) {
  let o = 0, u, d, k;
  [u, o] = readOpaque(b, o);
  [d, o] = readOpaque(b, o);
  [k, o] = readOpaque(b, o);
  if (o !== b.length) throw new Error("trailing bytes after the Matrix identity");
  return { userId: new TextDecoder().decode(u), deviceId: new TextDecoder().decode(d), signatureKey: k };
}

// CBOR (RFC 8949) for the federation map, core deterministic encoding
// (§4.2.1): shortest heads, definite lengths, map keys sorted by their
// encoded bytes. Only what the map needs: text strings, arrays, maps.
function cborHead(major, n) {
  if (n < 24) return Uint8Array.of((major << 5) | n);
  if (n < 0x100) return Uint8Array.of((major << 5) | 24, n);
  if (n < 0x10000) return Uint8Array.of((major << 5) | 25, n >> 8, n & 0xff);
  return Uint8Array.of((major << 5) | 26, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
}
function cbor(v) {
  if (typeof v === "string") {
    const b = utf8(v);
    return concat(cborHead(3, b.length), b);
  }
  if (Array.isArray(v)) return concat(cborHead(4, v.length), ...v.map(cbor));
  if (v && typeof v === "object") {
    const entries = Object.entries(v).map(([k, x]) => [cbor(k), cbor(x)]);
    entries.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    return concat(cborHead(5, entries.length), ...entries.flat());
  }
  throw new Error(`cannot CBOR-encode ${typeof v}`);
}
// decodeCBOR reads the subset cbor writes (definite-length text strings,
// arrays and maps with text keys; no duplicate keys), strictly: anything
// else, or trailing bytes, is an error.
function decodeCBOR(b) {
  let o = 0;
  const head = () => {
    if (o >= b.length) throw new Error("CBOR: unexpected end");
    const major = b[o] >> 5, info = b[o++] & 0x1f;
    let n;
    if (info < 24) n = info;
    else if (info === 24) n = b[o++];
    else if (info === 25) n = (b[o++] << 8) | b[o++];
    else if (info === 26) n = ((b[o++] << 24) >>> 0) + (b[o++] << 16) + (b[o++] << 8) + b[o++];
    else throw new Error(`CBOR: additional info ${info} not supported`);
    if (o > b.length) throw new Error("CBOR: unexpected end");
    return [major, n];
  };
  const item = () => {
    const [major, n] = head();
    if (major === 3) {
      if (o + n > b.length) throw new Error("CBOR: text overruns");
      const s = new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(o, o + n));
      o += n;
      return s;
    }
    if (major === 4) return Array.from({ length: n }, item);
    if (major === 5) {
      const m = {};
      for (let i = 0; i < n; i++) {
        const k = item();
        if (typeof k !== "string") throw new Error("CBOR: map key is not text");
        if (Object.hasOwn(m, k)) throw new Error(`CBOR: duplicate key ${k}`);
        m[k] = item();
      }
      return m;
    }
    throw new Error(`CBOR: major type ${major} not supported`);
  };
  const v = item();
  if (o !== b.length) throw new Error("CBOR: trailing bytes");
  return v;
}

// fed: {powers, servers, can_propose?}
function federationMap(fed) {
  const f = { powers: fed.powers, servers: fed.servers };
  if (fed.can_propose) f.can_propose = fed.can_propose;
  return cbor({ federation: f });
}

// --- adaptations (opt-in, see docs/INTEROP.md) ----------------------------

// ts-mls 1.6.4 makes P-256 signature public keys as compressed points
// (noble's getPublicKey default); RFC 9420 §5.1.1 wants the
// UncompressedPointRepresentation. The adaptation re-encodes the public
// key of a key pair made by ts-mls; signing is unchanged.
function uncompressP256(keys) {
  return { signKey: keys.signKey, publicKey: p256.Point.fromBytes(keys.publicKey).toBytes(false) };
}

// @hpke/hybridkem-x-wing 0.7.0 (ts-mls's X-Wing) derives key pairs as
// draft-connolly-cfrg-xwing-kem does, seed = SHAKE256(ikm, 32); Go's
// crypto/hpke MLKEM768X25519 (our mls package) as draft-ietf-hpke-pq
// does, seed = SHAKE256(ikm || "HPKE-v1" || "KEM" || 0x647a ||
// I2OSP(len(label), 2) || label || I2OSP(32, 2)) with label
// "DeriveKeyPair". The adaptation gives ts-mls the latter, so that the
// node keys MLS derives from path secrets agree.
function hpkePQDeriveKeyPair(impl) {
  const kem = new XWing();
  const label = new TextEncoder().encode("DeriveKeyPair");
  const deriveKeyPair = async (ikm) => {
    const seed = createHash("shake256", { outputLength: 32 })
      .update(ikm)
      .update("HPKE-v1")
      .update(Uint8Array.of(0x4b, 0x45, 0x4d, 0x64, 0x7a)) // "KEM", 0x647a
      .update(Uint8Array.of(0, label.length))
      .update(label)
      .update(Uint8Array.of(0, 32))
      .digest();
    const kp = await kem.generateKeyPairDerand(new Uint8Array(seed));
    return { privateKey: kp.privateKey, publicKey: kp.publicKey };
  };
  return { ...impl, hpke: { ...impl.hpke, deriveKeyPair } };
}

// --- the member ------------------------------------------------------------

class Member {
  constructor(baseURL, suiteNumber) {
    if (!SUITES[suiteNumber]) throw new Error(`suite ${suiteNumber} is not one SPEC-NOTES §1 accepts`);
    this.baseURL = baseURL;
    this.suiteName = SUITES[suiteNumber];
    this.alg = ALG_PREFIX + this.suiteName;
    this.keyPackages = new Map(); // key id -> {publicPackage, privatePackage}
    this.since = "";
    this.txn = 0;
    this.rooms = new Map(); // room id -> {state, commitId, queue: [events], seen: Set, own: Set}
  }

  async http(method, path, body, { auth = true, allow = [] } = {}) {
    const headers = { "content-type": "application/json" };
    if (auth) headers.authorization = `Bearer ${this.token}`;
    const res = await fetch(this.baseURL + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.status !== 200 && !allow.includes(res.status)) {
      throw new Error(`${method} ${path}: status ${res.status}: ${text}`);
    }
    return { status: res.status, body: json };
  }

  roomPath(roomId, rest) {
    return `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}${rest}`;
  }

  withCommitId(path, room) {
    return room.commitId ? `${path}?de.bwi.mls.commit_id=${encodeURIComponent(room.commitId)}` : path;
  }

  // init registers name. Options: uncompressed_p256 (suite 2: send the
  // signature key as RFC 9420 wants) and hpke_pq_derive (suite 83: derive
  // X-Wing key pairs as our mls package does).
  async init({ name, uncompressed_p256 = false, hpke_pq_derive = false }) {
    this.impl = await getCiphersuiteImpl(getCiphersuiteFromName(this.suiteName));
    const adaptations = [];
    if (hpke_pq_derive) {
      if (this.suiteName !== SUITES[83]) throw new Error("hpke_pq_derive is for suite 83 only");
      this.impl = hpkePQDeriveKeyPair(this.impl);
      adaptations.push("X-Wing DeriveKeyPair of draft-ietf-hpke-pq");
    }
    const r = await this.http("POST", "/_matrix/client/v3/register", {
      username: name, password: `pw-${name}`, auth: { type: "m.login.dummy" },
    }, { auth: false });
    this.userId = r.body.user_id;
    this.deviceId = r.body.device_id;
    this.token = r.body.access_token;
    this.sigKeys = await this.impl.signature.keygen();
    const madeKeyLength = this.sigKeys.publicKey.length;
    if (uncompressed_p256) {
      if (this.suiteName !== SUITES[2]) throw new Error("uncompressed_p256 is for suite 2 only");
      this.sigKeys = uncompressP256(this.sigKeys);
      adaptations.push("P-256 signature key re-encoded uncompressed");
    }
    this.credential = { credentialType: "basic", identity: encodeIdentity(this.userId, this.deviceId, this.sigKeys.publicKey) };
    return {
      user_id: this.userId, device_id: this.deviceId, algorithm: this.alg, suite: this.suiteName,
      signature_key_length_made: madeKeyLength, signature_key_length: this.sigKeys.publicKey.length, adaptations,
    };
  }

  async newKeyPackage() {
    const capabilities = {
      versions: ["mls10"],
      ciphersuites: [this.suiteName],
      extensions: [ROOM_STATE_EXTENSION],
      proposals: [],
      credentials: ["basic"],
    };
    const now = BigInt(Math.floor(Date.now() / 1000));
    // The server runs a fast test clock: a lifetime of a year covers it.
    const lifetime = { notBefore: now - 3600n, notAfter: now + 365n * 86400n };
    const kp = await generateKeyPackageWithKey(this.credential, capabilities, lifetime, [], this.sigKeys, this.impl);
    const ref = await makeKeyPackageRef(kp.publicPackage, this.impl.hash);
    const id = `${this.alg}:${b64std(ref)}`;
    this.keyPackages.set(id, kp);
    const wire = encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: kp.publicPackage });
    return [id, b64std(wire)];
  }

  async upload_keys({ count }) {
    const otks = {};
    for (let i = 0; i < count; i++) {
      const [id, v] = await this.newKeyPackage();
      otks[id] = v;
    }
    const cred = concat(Uint8Array.of(0, 1), opaque(this.credential.identity)); // Credential: basic (1), identity<V>
    const deviceKeys = {
      user_id: this.userId, device_id: this.deviceId, algorithms: [this.alg],
      keys: { [`${this.alg}:${this.deviceId}`]: b64std(cred) },
    };
    // MSC4256: the device keys are signed with the credential's signature
    // key, under the credential type as key ID (m.mls.v1.basic:<device>),
    // over their canonical JSON as Matrix signs JSON.
    const sig = await this.impl.signature.sign(this.sigKeys.signKey, utf8(canonicalJSON(deviceKeys)));
    deviceKeys.signatures = { [this.userId]: { [`m.mls.v1.basic:${this.deviceId}`]: b64std(sig) } };
    const body = { one_time_keys: otks, device_keys: deviceKeys };
    const r = await this.http("POST", "/_matrix/client/v3/keys/upload", body);
    return { key_ids: Object.keys(otks), one_time_key_counts: r.body.one_time_key_counts, credential: b64std(cred) };
  }

  // upload_bad_key_package uploads a key package whose capabilities lack
  // 0xF6D0 and reports the server's answer (which must refuse it).
  async upload_bad_key_package() {
    const capabilities = { versions: ["mls10"], ciphersuites: [this.suiteName], extensions: [], proposals: [], credentials: ["basic"] };
    const kp = await generateKeyPackageWithKey(this.credential, capabilities, { notBefore: 0n, notAfter: 2n ** 62n }, [], this.sigKeys, this.impl);
    const ref = await makeKeyPackageRef(kp.publicPackage, this.impl.hash);
    const wire = encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: kp.publicPackage });
    const r = await this.http("POST", "/_matrix/client/v3/keys/upload",
      { one_time_keys: { [`${this.alg}:${b64std(ref)}`]: b64std(wire) } }, { allow: [400, 403] });
    return { status: r.status, errcode: r.body?.errcode, error: r.body?.error };
  }

  async sync(timeout = 1000) {
    const q = `timeout=${timeout}` + (this.since ? `&since=${encodeURIComponent(this.since)}` : "");
    const r = await this.http("GET", `/_matrix/client/v3/sync?${q}`);
    this.since = r.body.next_batch;
    const join = r.body.rooms?.join ?? {};
    for (const [roomId, room] of Object.entries(join)) {
      const st = this.rooms.get(roomId);
      if (!st) continue;
      for (const ev of room.timeline?.events ?? []) {
        if (!st.seen.has(ev.event_id)) {
          st.seen.add(ev.event_id);
          st.queue.push(ev);
        }
      }
    }
    return r.body;
  }

  async initial_sync() {
    await this.sync(0);
    return { since: this.since };
  }

  memberList(state) {
    const out = [];
    state.ratchetTree.forEach((n, i) => {
      if (i % 2 === 0 && n && n.nodeType === "leaf") {
        const c = n.leaf.credential;
        if (c.credentialType !== "basic") throw new Error(`leaf ${i / 2}: credential type ${c.credentialType}`);
        const id = decodeIdentity(c.identity);
        if (hex(id.signatureKey) !== hex(n.leaf.signaturePublicKey)) {
          throw new Error(`leaf ${i / 2}: the identity's signature_key is not the leaf's`);
        }
        out.push({ leaf: i / 2, user_id: id.userId, device_id: id.deviceId });
      }
    });
    return out;
  }

  summary(room) {
    return { epoch: Number(room.state.groupContext.epoch), members: this.memberList(room.state), commit_id: room.commitId };
  }

  async join_from_welcome({ room_id, commit_id }) {
    let welcome, invited = false;
    for (let i = 0; i < 30 && (!welcome || !invited); i++) {
      const body = await this.sync(1000);
      if (body.rooms?.invite?.[room_id]) invited = true;
      for (const ev of body.to_device?.events ?? []) {
        if (ev.type === "m.mls.welcome" && ev.content?.room_id === room_id) {
          if (ev.content.algorithm !== this.alg) throw new Error(`Welcome algorithm ${ev.content.algorithm}, want ${this.alg}`);
          const [m] = decodeMlsMessage(unb64(ev.content.welcome), 0);
          if (m.wireformat !== "mls_welcome") throw new Error(`to-device welcome has wire format ${m.wireformat}`);
          welcome = m.welcome;
        }
      }
    }
    if (!welcome || !invited) throw new Error(`no invite (${invited}) and Welcome (${!!welcome}) for ${room_id}`);
    let mine;
    for (const [, kp] of this.keyPackages) {
      const ref = await makeKeyPackageRef(kp.publicPackage, this.impl.hash);
      if (welcome.secrets.some((s) => hex(s.newMember) === hex(ref))) mine = kp;
    }
    if (!mine) throw new Error("the Welcome is for none of our key packages");
    // No ratchet tree passed: ts-mls reads the Welcome's ratchet_tree extension.
    const state = await joinGroup(welcome, mine.publicPackage, mine.privatePackage, emptyPskIndex, this.impl);
    if (new TextDecoder().decode(state.groupContext.groupId) !== room_id) throw new Error("the group ID is not the room ID");
    await this.http("POST", this.roomPath(room_id, "/join"), {});
    const room = { state, commitId: commit_id, queue: [], seen: new Set(), own: new Map() };
    this.rooms.set(room_id, room);
    const rc = state.groupContext.extensions.find((e) => e.extensionType === "required_capabilities");
    if (!rc) throw new Error("the group context has no required_capabilities extension");
    const decoded = decodeRequiredCapabilities(rc.extensionData, 0);
    if (!decoded) throw new Error("required_capabilities does not decode");
    return { ...this.summary(room), required_extension_types: decoded[0].extensionTypes };
  }

  // next returns the next timeline event of the room (syncing for it).
  async next(roomId, within = 30000) {
    const room = this.rooms.get(roomId);
    const deadline = Date.now() + within;
    while (room.queue.length === 0) {
      if (Date.now() > deadline) throw new Error(`no further event in ${roomId} within ${within} ms`);
      await this.sync(1000);
    }
    return room.queue.shift();
  }

  // await_event processes the room's events in order up to event_id and
  // reports what that one was.
  async await_event({ room_id, event_id }) {
    const room = this.rooms.get(room_id);
    const skipped = [];
    for (;;) {
      const ev = await this.next(room_id);
      const res = await this.process(room, ev);
      if (ev.event_id === event_id) return { ...res, skipped, ...this.summary(room) };
      if (res.kind === "commit") throw new Error(`commit ${ev.event_id} arrived before ${event_id}`);
      skipped.push({ event_id: ev.event_id, type: ev.type, kind: res.kind });
    }
  }

  async process(room, ev) {
    if (room.own.has(ev.event_id)) {
      const own = room.own.get(ev.event_id);
      if (own.kind === "commit") {
        room.state = own.newState;
        room.commitId = ev.event_id;
      }
      return { kind: "own " + own.kind, type: ev.type };
    }
    if (ev.type === PENDING_TYPE) return { kind: "pending commit", type: ev.type };
    if (ev.type !== ENCRYPTED_TYPE && ev.type !== COMMIT_TYPE) return { kind: "other", type: ev.type };
    if (ev.content.algorithm !== this.alg) throw new Error(`${ev.event_id}: algorithm ${ev.content.algorithm}`);
    const [m] = decodeMlsMessage(unb64(ev.content.ciphertext), 0);
    if (m.wireformat !== "mls_private_message") throw new Error(`${ev.event_id}: wire format ${m.wireformat}`);
    const pm = m.privateMessage;
    const res = await processPrivateMessage(room.state, pm, emptyPskIndex, this.impl);
    room.state = res.newState;
    if (res.kind === "applicationMessage") {
      const pt = JSON.parse(new TextDecoder().decode(res.message));
      return { kind: "message", type: ev.type, event_type: pt.type, body: pt.content?.body, authenticated_data: hex(pm.authenticatedData) };
    }
    if (ev.type !== COMMIT_TYPE) return { kind: "proposal", type: ev.type };
    room.commitId = ev.event_id;
    return {
      kind: "commit", type: ev.type, authenticated_data: hex(pm.authenticatedData),
      federation: decodeCBOR(pm.authenticatedData).federation, removed: this.removed(room),
    };
  }

  removed(room) {
    return room.state.groupActiveState?.kind !== undefined && room.state.groupActiveState.kind !== "active";
  }

  async send_message({ room_id, text }) {
    const room = this.rooms.get(room_id);
    const pt = utf8(JSON.stringify({ type: "m.room.message", content: { msgtype: "m.text", body: text } }));
    const r = await createApplicationMessage(room.state, pt, this.impl);
    room.state = r.newState;
    const wire = encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: r.privateMessage });
    const path = this.withCommitId(this.roomPath(room_id, `/send/${ENCRYPTED_TYPE}/tsmls-${++this.txn}`), room);
    const res = await this.http("PUT", path, { algorithm: this.alg, ciphertext: b64std(wire) });
    room.own.set(res.body.event_id, { kind: "message" });
    return { event_id: res.body.event_id };
  }

  leafOf(room, userId) {
    const m = this.memberList(room.state).find((x) => x.user_id === userId);
    if (!m) throw new Error(`${userId} is not a member`);
    return m.leaf;
  }

  async stage(room, proposals, fed) {
    const ad = federationMap(fed);
    const r = await createCommit({ state: room.state, cipherSuite: this.impl },
      { extraProposals: proposals, authenticatedData: ad, ratchetTreeExtension: true });
    if (r.commit.wireformat !== "mls_private_message") throw new Error(`commit framed as ${r.commit.wireformat}`);
    return { ...r, ad, wire: encodeMlsMessage(r.commit) };
  }

  // Waits until the room's timeline brings the own commit back and merges
  // it (SPEC-NOTES §6: accepted only when it comes back in /sync).
  async awaitOwnCommit(room, roomId, eventId, staged) {
    room.own.set(eventId, { kind: "commit", newState: staged.newState });
    for (;;) {
      const ev = await this.next(roomId);
      const res = await this.process(room, ev);
      if (ev.event_id === eventId) return;
      if (res.kind === "commit") throw new Error(`another commit ${ev.event_id} came before ours`);
    }
  }

  // commit_remove commits removing user_id's leaf with PUT /state (the
  // member's server being powers[0]).
  async commit_remove({ room_id, user_id, federation }) {
    const room = this.rooms.get(room_id);
    const leaf = this.leafOf(room, user_id);
    const st = await this.stage(room, [{ proposalType: "remove", remove: { removed: leaf } }], federation);
    const path = this.withCommitId(this.roomPath(room_id, `/state/${COMMIT_TYPE}/`), room);
    const res = await this.http("PUT", path, { algorithm: this.alg, ciphertext: b64url(st.wire) });
    const eventId = res.body.event_id;
    await this.awaitOwnCommit(room, room_id, eventId, st);
    return { event_id: eventId, removed_leaf: leaf, authenticated_data: hex(st.ad), ...this.summary(room) };
  }

  // try_commit sends an empty commit (with a path) with PUT /state and
  // reports the server's answer; it never merges the commit.
  async try_commit({ room_id, federation }) {
    const room = this.rooms.get(room_id);
    const st = await this.stage(room, [], federation);
    const path = this.withCommitId(this.roomPath(room_id, `/state/${COMMIT_TYPE}/`), room);
    const r = await this.http("PUT", path, { algorithm: this.alg, ciphertext: b64url(st.wire) }, { allow: [400, 403, 409] });
    return { status: r.status, event_id: r.body?.event_id, errcode: r.body?.errcode, error: r.body?.error };
  }

  async claim(userId, deviceId) {
    const r = await this.http("POST", "/_matrix/client/v3/keys/claim", { one_time_keys: { [userId]: { [deviceId]: this.alg } } });
    const claimed = r.body.one_time_keys?.[userId]?.[deviceId] ?? {};
    const ids = Object.keys(claimed);
    if (ids.length !== 1) throw new Error(`claimed ${ids.length} key packages of ${userId} ${deviceId}`);
    const [m] = decodeMlsMessage(unb64(claimed[ids[0]]), 0);
    if (m.wireformat !== "mls_key_package") throw new Error(`claimed key has wire format ${m.wireformat}`);
    const ref = await makeKeyPackageRef(m.keyPackage, this.impl.hash);
    if (ids[0] !== `${this.alg}:${b64std(ref)}`) throw new Error(`claimed key id ${ids[0]} is not its KeyPackageRef`);
    return m.keyPackage;
  }

  // commit_add_pending claims a key package of user_id's device, sends the
  // add as a pending commit, waits until a server applies it and it comes
  // back as the room's commit, then sends the Welcome and the invite.
  async commit_add_pending({ room_id, user_id, device_id, federation, within_ms }) {
    const room = this.rooms.get(room_id);
    const kp = await this.claim(user_id, device_id);
    const st = await this.stage(room, [{ proposalType: "add", add: { keyPackage: kp } }], federation);
    if (!st.welcome) throw new Error("the add commit has no Welcome");
    const path = this.withCommitId(this.roomPath(room_id, `/send/${PENDING_TYPE}/tsmls-${++this.txn}`), room);
    const ct = b64url(st.wire);
    const sent = Date.now();
    const res = await this.http("PUT", path, { algorithm: this.alg, ciphertext: ct });
    const pendingId = res.body.event_id;
    room.own.set(pendingId, { kind: "pending commit" });
    const statusPath = `/_matrix/client/unstable/de.bwi.mls/rooms/${encodeURIComponent(room_id)}/pending_commit/${encodeURIComponent(pendingId)}`;
    const statuses = [];
    let commitId;
    for (const deadline = Date.now() + within_ms; ;) {
      const s = await this.http("GET", statusPath);
      if (statuses[statuses.length - 1] !== s.body.status) statuses.push(s.body.status);
      if (s.body.status === "applied") {
        commitId = s.body.commit_event_id;
        break;
      }
      if (s.body.status !== "waiting") throw new Error(`pending commit ${pendingId}: ${JSON.stringify(s.body)}`);
      if (Date.now() > deadline) throw new Error(`pending commit not applied within ${within_ms} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const appliedAfter = Date.now() - sent;
    // The applied commit carries our ciphertext unchanged.
    const ev = await this.http("GET", this.roomPath(room_id, `/event/${encodeURIComponent(commitId)}`));
    if (ev.body.type !== COMMIT_TYPE || ev.body.content.ciphertext !== ct) {
      throw new Error(`the applied commit ${commitId} does not carry our pending commit: ${JSON.stringify(ev.body)}`);
    }
    await this.awaitOwnCommit(room, room_id, commitId, st);
    const welcome = encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: st.welcome });
    await this.http("PUT", `/_matrix/client/v3/sendToDevice/m.mls.welcome/tsmls-${++this.txn}`, {
      messages: { [user_id]: { [device_id]: { algorithm: this.alg, room_id, welcome: b64std(welcome) } } },
    });
    await this.http("POST", this.roomPath(room_id, "/invite"), { user_id });
    return {
      pending_event_id: pendingId, commit_event_id: commitId, commit_origin: ev.body.origin, statuses,
      applied_after_ms: appliedAfter, authenticated_data: hex(st.ad), ...this.summary(room),
    };
  }
}

// --- the command loop --------------------------------------------------------

// The commands, each a method of Member taking the command object.
const COMMANDS = new Set(["init", "upload_keys", "upload_bad_key_package", "initial_sync", "join_from_welcome",
  "await_event", "send_message", "commit_remove", "try_commit", "commit_add_pending"]);

let member;
const rl = createInterface({ input: process.stdin });
const reply = (o) => process.stdout.write(JSON.stringify(o) + "\n");
for await (const line of rl) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
    if (cmd.cmd === "quit") {
      reply({ ok: true });
      break;
    }
    if (cmd.cmd === "init") member = new Member(cmd.base_url, cmd.suite);
    if (!member) throw new Error("init first");
    if (!COMMANDS.has(cmd.cmd)) throw new Error(`unknown command ${cmd.cmd}`);
    const f = member[cmd.cmd];
    const t0 = Date.now();
    const res = await f.call(member, cmd);
    log(`${cmd.cmd} done in ${Date.now() - t0} ms`);
    reply({ ok: true, ...res });
  } catch (e) {
    log(e?.stack ?? String(e));
    reply({ ok: false, error: String(e?.message ?? e) });
  }
}
process.exit(0);
