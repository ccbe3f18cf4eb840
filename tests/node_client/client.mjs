// A cleanroom client in another language, written from the public documents only (docs/wire-format.md,
// docs/openapi.json, the README's HTTP section) — never from src/. If it interoperates, the documents are
// enough; every place they were not is a finding fixed in the documents, not worked around here.
//
// Node's built-ins only: `crypto` (ECDH on secp384r1, HMAC-SHA384, AES-256-GCM) and `fetch`. HPKE (RFC 9180
// base mode, DHKEM(P-384, HKDF-SHA384), HKDF-SHA384, AES-256-GCM) is composed here step by step from the
// RFC's pseudocode: this is a test client, not product code, and the point is an implementation that
// shares nothing with the Python one.
//
// Usage (tests/test_node_client.py drives it):
//   node client.mjs vectors FILE             check tests/vectors/sealed-v1.json byte for byte
//   node client.mjs canonical < [{model, path, request_id, tenant_id, ts}]   the metadata, one a line
//   node client.mjs infer --url U --api-key K --model M [options] < payload > result
//     --ts-offset S          seal with ts = now + S (a stale request)
//     --tamper-response I    flip the low bit of answer byte I (negative: from the end) before opening
//     --truncate-response N  keep only the first N bytes of the answer
//     --replay               send the same sealed body a second time and report that answer
//     --swap-response        open request A's answer with request B's context (must be rejected)
//   node client.mjs scenarios --url U --api-key K < [{id, model, payload (base64), flags}]  many calls
// Exit status: 0 ok; 2 the server refused (stderr: one JSON line {"error":"server_refused","status",
// "code","message"}); 3 this client rejected the answer ({"error":"response_rejected","reason"});
// 1 anything else ({"error":"failure","reason"}).

import crypto from "node:crypto";
import fs from "node:fs";

const CONTENT_TYPE = "application/vnd.cleanroom.sealed";
const SUITE_NAME = "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM";
const REQUEST_MAGIC = Buffer.from("CRQ1", "ascii");
const RESPONSE_MAGIC = Buffer.from("CRS1", "ascii");
const SUITE_BYTE = 0x01;
const HPKE_INFO_LABEL = Buffer.from("cleanroom/v1 sealed request", "ascii");
const REQUEST_KEY_LABEL = Buffer.from("cleanroom/v1 request key", "ascii");
const RESPONSE_KEY_LABEL = Buffer.from("cleanroom/v1 response key", "ascii");
// the only two labels that end in a NUL byte (wire-format.md, Primitives)
const REQUEST_AAD_LABEL = Buffer.from("cleanroom/v1 request payload\0", "ascii");
const RESPONSE_AAD_LABEL = Buffer.from("cleanroom/v1 response payload\0", "ascii");
const TAG = 16;
const RESPONSE_HEADER = 21; // magic 4 + suite 1 + request id 16

class ResponseRejected extends Error {}
class ServerRefused extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    Object.assign(this, { status, code, detail: message });
  }
}

// --- RFC 5869 HKDF over HMAC-SHA384 ---------------------------------------------------------------------

const HASH = "sha384";
const NH = 48;

function hmac(key, data) {
  return crypto.createHmac(HASH, key).update(data).digest();
}

function extract(salt, ikm) {
  // RFC 5869 §2.2: an absent salt is HashLen zero bytes (HMAC pads an empty key to the same thing)
  return hmac(salt.length ? salt : Buffer.alloc(NH), ikm);
}

function expand(prk, info, length) {
  const blocks = [];
  let previous = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(blocks).length < length; i++) {
    previous = hmac(prk, Buffer.concat([previous, info, Buffer.from([i])]));
    blocks.push(previous);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

function hkdf(ikm, salt, info, length) {
  return expand(extract(salt, ikm), info, length);
}

// --- RFC 9180 HPKE, base mode, single shot ---------------------------------------------------------------

const KEM_ID = 0x0011; // DHKEM(P-384, HKDF-SHA384)
const KDF_ID = 0x0002; // HKDF-SHA384
const AEAD_ID = 0x0002; // AES-256-GCM
const N_SECRET = 48;
const N_K = 32;
const N_N = 12;
const N_ENC = 97; // uncompressed P-384 point

const i2osp = (value, length) => {
  const out = Buffer.alloc(length);
  out.writeUIntBE(value, 0, length);
  return out;
};
const HPKE_V1 = Buffer.from("HPKE-v1", "ascii");
const KEM_SUITE_ID = Buffer.concat([Buffer.from("KEM", "ascii"), i2osp(KEM_ID, 2)]);
const HPKE_SUITE_ID = Buffer.concat([Buffer.from("HPKE", "ascii"), i2osp(KEM_ID, 2), i2osp(KDF_ID, 2), i2osp(AEAD_ID, 2)]);

function labeledExtract(suiteId, salt, label, ikm) {
  return extract(salt, Buffer.concat([HPKE_V1, suiteId, Buffer.from(label, "ascii"), ikm]));
}

function labeledExpand(suiteId, prk, label, info, length) {
  const labeled = Buffer.concat([i2osp(length, 2), HPKE_V1, suiteId, Buffer.from(label, "ascii"), info]);
  return expand(prk, labeled, length);
}

function extractAndExpand(dh, kemContext) {
  const prk = labeledExtract(KEM_SUITE_ID, Buffer.alloc(0), "eae_prk", dh);
  return labeledExpand(KEM_SUITE_ID, prk, "shared_secret", kemContext, N_SECRET);
}

function keySchedule(sharedSecret, info) {
  const empty = Buffer.alloc(0);
  const pskIdHash = labeledExtract(HPKE_SUITE_ID, empty, "psk_id_hash", empty);
  const infoHash = labeledExtract(HPKE_SUITE_ID, empty, "info_hash", info);
  const context = Buffer.concat([Buffer.from([0x00]), pskIdHash, infoHash]); // mode_base = 0
  const secret = labeledExtract(HPKE_SUITE_ID, sharedSecret, "secret", empty);
  return {
    key: labeledExpand(HPKE_SUITE_ID, secret, "key", context, N_K),
    nonce: labeledExpand(HPKE_SUITE_ID, secret, "base_nonce", context, N_N), // seq 0: base nonce as is
  };
}

function gcmSeal(key, nonce, aad, plaintext) {
  const cipher = crypto.createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function gcmOpen(key, nonce, aad, sealed) {
  if (sealed.length < TAG) throw new ResponseRejected("shorter than a tag");
  const decipher = crypto.createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG)), decipher.final()]);
  } catch {
    throw new ResponseRejected("authentication tag does not verify");
  }
}

/** HPKE SealBase(pkR, info, aad = "", pt): enc ‖ ciphertext ‖ tag. */
function hpkeSeal(recipientPoint, info, plaintext) {
  const ephemeral = crypto.createECDH("secp384r1");
  const enc = ephemeral.generateKeys(null, "uncompressed");
  const dh = ephemeral.computeSecret(recipientPoint); // the x coordinate, 48 bytes (RFC 9180 §7.1.3)
  const shared = extractAndExpand(dh, Buffer.concat([enc, recipientPoint]));
  const { key, nonce } = keySchedule(shared, info);
  return Buffer.concat([enc, gcmSeal(key, nonce, Buffer.alloc(0), plaintext)]);
}

/** HPKE OpenBase(enc, skR, info, aad = "", ct): only the test vectors need it. */
function hpkeOpen(recipientScalar, info, blob) {
  const recipient = crypto.createECDH("secp384r1");
  recipient.setPrivateKey(recipientScalar);
  const enc = blob.subarray(0, N_ENC);
  const dh = recipient.computeSecret(enc);
  const shared = extractAndExpand(dh, Buffer.concat([enc, recipient.getPublicKey(null, "uncompressed")]));
  const { key, nonce } = keySchedule(shared, info);
  return gcmOpen(key, nonce, Buffer.alloc(0), blob.subarray(N_ENC));
}

// --- the cleanroom layer --------------------------------------------------------------------------------

/** What Python's json.dumps(fields, sort_keys=True, separators=(",", ":")) writes (wire-format.md). */
export function canonicalMetadata({ model, path, requestId, tenantId, ts }) {
  const fields = { model, path, request_id: requestId.toString("hex"), tenant_id: tenantId, ts, v: 1 };
  const sorted = Object.fromEntries(Object.keys(fields).sort().map((k) => [k, fields[k]]));
  // JSON.stringify already escapes " \ and C0 controls as Python does (\b \f \n \r \t, else \u00xx) and
  // lone surrogates as \udxxx; Python's ensure_ascii also escapes everything else outside 0x20..0x7e,
  // DEL included, one \uxxxx per UTF-16 code unit (a regex without the u flag sees code units).
  const text = JSON.stringify(sorted).replace(/[^\x20-\x7e]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  return Buffer.from(text, "ascii");
}

function deriveKeyNonce(cek, requestId, label) {
  const okm = hkdf(cek, requestId, label, 44);
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32) };
}

function requestPrefix(keyId) {
  const id = Buffer.from(keyId, "ascii");
  if (id.length < 1 || id.length > 64 || !/^[A-Za-z0-9._:-]+$/.test(keyId)) throw new Error(`bad key id ${keyId}`);
  return Buffer.concat([REQUEST_MAGIC, Buffer.from([SUITE_BYTE, id.length]), id]);
}

/** Seal one request; `hpkeBlob` lets the vector check reuse a recorded blob (HPKE draws a fresh key). */
function sealRequest({ key, model, path, payload, ts, requestId, cek, hpkeBlob }) {
  requestId ??= crypto.randomBytes(16);
  cek ??= crypto.randomBytes(32);
  const metadata = canonicalMetadata({ model, path, requestId, tenantId: key.tenantId, ts });
  const prefix = requestPrefix(key.keyId);
  hpkeBlob ??= hpkeSeal(key.point, Buffer.concat([HPKE_INFO_LABEL, prefix]), Buffer.concat([cek, metadata]));
  const header = Buffer.concat([prefix, i2osp(hpkeBlob.length, 2), hpkeBlob]);
  const { key: k, nonce } = deriveKeyNonce(cek, requestId, REQUEST_KEY_LABEL);
  const ciphertext = gcmSeal(k, nonce, Buffer.concat([REQUEST_AAD_LABEL, header, metadata]), payload);
  return { body: Buffer.concat([header, ciphertext]), headerLength: header.length, metadata, requestId, cek };
}

function responseAad(header, metadata) {
  return Buffer.concat([RESPONSE_AAD_LABEL, header, metadata]);
}

function sealResponse(sealed, plaintext) {
  const header = Buffer.concat([RESPONSE_MAGIC, Buffer.from([SUITE_BYTE]), sealed.requestId]);
  const { key, nonce } = deriveKeyNonce(sealed.cek, sealed.requestId, RESPONSE_KEY_LABEL);
  return Buffer.concat([header, gcmSeal(key, nonce, responseAad(header, sealed.metadata), plaintext)]);
}

/** The checks, in the documented order, before any byte is used. */
function openResponse(sealed, answer) {
  if (answer.length < RESPONSE_HEADER + TAG) throw new ResponseRejected(`answer of ${answer.length} bytes`);
  if (!answer.subarray(0, 4).equals(RESPONSE_MAGIC)) throw new ResponseRejected("magic is not CRS1");
  if (answer[4] !== SUITE_BYTE) throw new ResponseRejected(`suite ${answer[4]}`);
  if (!answer.subarray(5, RESPONSE_HEADER).equals(sealed.requestId)) throw new ResponseRejected("request id is not ours");
  const { key, nonce } = deriveKeyNonce(sealed.cek, sealed.requestId, RESPONSE_KEY_LABEL);
  const header = answer.subarray(0, RESPONSE_HEADER);
  return gcmOpen(key, nonce, responseAad(header, sealed.metadata), answer.subarray(RESPONSE_HEADER));
}

/** `cleanroom-pk:v1:<tenant id>:<key id>:<base64url point>`: split off three fields and the last. */
function parseToken(token) {
  const parts = token.split(":");
  if (parts.length < 5 || parts[0] !== "cleanroom-pk" || parts[1] !== "v1") throw new Error("not a v1 key token");
  const point = Buffer.from(parts[parts.length - 1], "base64url");
  if (point.length !== 97 || point[0] !== 0x04) throw new Error("the point is not 97 bytes from 0x04");
  return { tenantId: parts[2], keyId: parts.slice(3, -1).join(":"), point };
}

// --- HTTP -----------------------------------------------------------------------------------------------

async function refusal(response) {
  const text = await response.text();
  let code = "?";
  let message = text.slice(0, 200);
  try {
    ({ code, message } = JSON.parse(text).error);
  } catch {
    /* not the documented JSON: reported as "?" */
  }
  return new ServerRefused(response.status, code, message);
}

async function fetchKey(url, apiKey) {
  const response = await fetch(`${url}/v1/tenants/self/public-key`, { headers: { authorization: `Bearer ${apiKey}` } });
  if (response.status !== 200) throw await refusal(response);
  const answer = await response.json();
  const key = parseToken(answer.public_key);
  // "A client checks all three before sealing" (wire-format.md, Tenant public key token)
  const fingerprint = crypto.createHash("sha256").update(key.point).digest("hex");
  if (answer.tenant_id !== key.tenantId || answer.key_id !== key.keyId) throw new Error("ids differ from the token's");
  if (answer.fingerprint !== fingerprint) throw new Error("fingerprint is not the point's SHA-256");
  if (answer.suite !== SUITE_NAME) throw new Error(`suite ${answer.suite}`);
  return key;
}

async function post(url, apiKey, model, body) {
  const response = await fetch(`${url}/v1/models/${encodeURIComponent(model)}/infer`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": CONTENT_TYPE },
    body,
    redirect: "manual",
  });
  if (response.status !== 200) throw await refusal(response);
  const type = (response.headers.get("content-type") || "").split(";")[0].trim().toLowerCase();
  if (type !== CONTENT_TYPE) throw new ResponseRejected(`200 with content type ${type}`);
  return Buffer.from(await response.arrayBuffer());
}

async function infer(options, payload, key) {
  const { url, apiKey, model } = options;
  key ??= await fetchKey(url, apiKey);
  const now = () => Math.floor(Date.now() / 1000);
  const seal = () => sealRequest({ key, model, path: "", payload, ts: now() + (options.tsOffset ?? 0) });
  const sealed = seal();
  let answer = await post(url, apiKey, model, sealed.body);
  if (options.replay) {
    openResponse(sealed, answer); // the first one must go through
    answer = await post(url, apiKey, model, sealed.body);
  }
  if (options.swap) {
    const other = seal();
    await post(url, apiKey, model, other.body);
    return openResponse(other, answer);
  }
  if (options.tamper !== undefined) {
    answer = Buffer.from(answer);
    answer[options.tamper < 0 ? answer.length + options.tamper : options.tamper] ^= 0x01;
  }
  if (options.truncate !== undefined) answer = answer.subarray(0, options.truncate);
  return openResponse(sealed, answer);
}

// --- test vectors (wire-format.md, "Test vectors", steps 1-5) ---------------------------------------------

// "Intermediate values for echo-short", copied from the document
const ECHO_SHORT = {
  recipientPublic:
    "048a0cb9e68d2b0be062a764b5652a2ccef37b453a3dd51088485694e596555b45a8cf10fd548099e9" +
    "25e114fdd0ded58ab86c7b7d187fc8634e64f5c2b906e66d65564bbcb09544c28820ac06eb9f56e0a6" +
    "c0f5de5140b657a617c28646149e06",
  prefix: "43525131010b686b5f766563746f7230310108",
  requestKey: "bed75ebf63bb4678dc06f8329fd84c9172c8b74c34c2a681d9edbbabb829ae51",
  requestNonce: "858f7394ff01683fb1b3242e",
  responseKey: "e3e843ec6292140f7d5f9e087d024f47560ef0322bf2451c709e163b4305f549",
  responseNonce: "8f9cf1018ced4938a4a8ca0c",
};

function expectEqual(what, got, want) {
  const [g, w] = [Buffer.isBuffer(got) ? got.toString("hex") : got, Buffer.isBuffer(want) ? want.toString("hex") : want];
  if (g !== w) throw new Error(`${what}: got ${String(g).slice(0, 120)}, want ${String(w).slice(0, 120)}`);
}

function checkVectors(file) {
  const vectors = JSON.parse(fs.readFileSync(file, "utf8"));
  expectEqual("suite", vectors.suite, SUITE_NAME);
  const scalar = Buffer.from(vectors.recipient_private_scalar, "hex");
  const recipient = crypto.createECDH("secp384r1");
  recipient.setPrivateKey(scalar);
  const point = recipient.getPublicKey(null, "uncompressed");
  expectEqual("recipient public key", point, ECHO_SHORT.recipientPublic);
  const hex = (s) => Buffer.from(s, "hex");
  const results = {};
  for (const c of vectors.cases) {
    const key = { tenantId: c.tenant_id, keyId: c.key_id, point };
    const requestId = hex(c.request_id);
    const cek = hex(c.content_key);
    const body = hex(c.sealed_request);
    // 1. canonical metadata
    const metadata = canonicalMetadata({ model: c.model, path: c.path, requestId, tenantId: c.tenant_id, ts: c.ts });
    expectEqual(`${c.name} metadata`, metadata.toString("ascii"), c.metadata);
    // 2. the header's fixed bytes and E
    const prefix = requestPrefix(c.key_id);
    expectEqual(`${c.name} bytes 0..6+K`, body.subarray(0, prefix.length), prefix);
    const e = body.readUInt16BE(prefix.length);
    expectEqual(`${c.name} header_length`, prefix.length + 2 + e, c.header_length);
    if (c.name === "echo-short") expectEqual("echo-short bytes 0..8+K", body.subarray(0, prefix.length + 2), hex(ECHO_SHORT.prefix));
    // 3. the recorded HPKE blob opens to CEK ‖ metadata
    const blob = body.subarray(prefix.length + 2, c.header_length);
    const opened = hpkeOpen(scalar, Buffer.concat([HPKE_INFO_LABEL, prefix]), blob);
    expectEqual(`${c.name} HPKE plaintext`, opened, Buffer.concat([cek, metadata]));
    // 4. the payload ciphertext, byte for byte (the recorded blob in the header, so the AAD is the same)
    const sealed = sealRequest({ key, model: c.model, path: c.path, payload: hex(c.payload), ts: c.ts, requestId, cek, hpkeBlob: blob });
    expectEqual(`${c.name} sealed_request`, sealed.body, body);
    expectEqual(`${c.name} payload_ciphertext`, body.subarray(c.header_length), hex(c.payload_ciphertext));
    if (c.name === "echo-short") {
      const req = deriveKeyNonce(cek, requestId, REQUEST_KEY_LABEL);
      const res = deriveKeyNonce(cek, requestId, RESPONSE_KEY_LABEL);
      expectEqual("request key", req.key, ECHO_SHORT.requestKey);
      expectEqual("request nonce", req.nonce, ECHO_SHORT.requestNonce);
      expectEqual("response key", res.key, ECHO_SHORT.responseKey);
      expectEqual("response nonce", res.nonce, ECHO_SHORT.responseNonce);
      // our HKDF against node's own, once
      expectEqual("hkdf", req.key, Buffer.from(crypto.hkdfSync("sha384", cek, requestId, REQUEST_KEY_LABEL, 44)).subarray(0, 32));
    }
    // 5. the response, byte for byte, and it opens
    expectEqual(`${c.name} sealed_response`, sealResponse(sealed, hex(c.response_plaintext)), hex(c.sealed_response));
    expectEqual(`${c.name} opened response`, openResponse(sealed, hex(c.sealed_response)), hex(c.response_plaintext));
    // our HPKE seal opens with our HPKE open (the server checks it for real)
    const fresh = sealRequest({ key, model: c.model, path: c.path, payload: hex(c.payload), ts: c.ts });
    const freshBlob = fresh.body.subarray(prefix.length + 2, fresh.headerLength);
    hpkeOpen(scalar, Buffer.concat([HPKE_INFO_LABEL, prefix]), freshBlob);
    results[c.name] = "ok";
  }
  return results;
}

// --- command line ---------------------------------------------------------------------------------------

function parseArgs(argv) {
  const options = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => argv[++i];
    if (flag === "--url") options.url = value().replace(/\/+$/, "");
    else if (flag === "--api-key") options.apiKey = value();
    else if (flag === "--model") options.model = value();
    else if (flag === "--ts-offset") options.tsOffset = Number(value());
    else if (flag === "--tamper-response") options.tamper = Number(value());
    else if (flag === "--truncate-response") options.truncate = Number(value());
    else if (flag === "--replay") options.replay = true;
    else if (flag === "--swap-response") options.swap = true;
    else throw new Error(`unknown flag ${flag}`);
  }
  return options;
}

async function main(argv) {
  const [command, ...rest] = argv;
  if (command === "vectors") {
    process.stdout.write(JSON.stringify(checkVectors(rest[0])) + "\n");
    return 0;
  }
  if (command === "canonical") {
    // stdin: a JSON list of {model, path, request_id (hex), tenant_id, ts}; stdout: one metadata per line
    for (const f of JSON.parse(fs.readFileSync(0, "utf8"))) {
      const fields = { model: f.model, path: f.path, requestId: Buffer.from(f.request_id, "hex"), tenantId: f.tenant_id, ts: f.ts };
      process.stdout.write(canonicalMetadata(fields).toString("ascii") + "\n");
    }
    return 0;
  }
  if (command === "infer") {
    const payload = fs.readFileSync(0);
    const result = await infer(parseArgs(rest), payload);
    await new Promise((resolve) => process.stdout.write(result, resolve));
    return 0;
  }
  if (command === "scenarios") {
    // one process for many calls (each node start + TLS handshake costs ~0.4 s on the 2-core box):
    // stdin is a JSON list of {id, model, payload (base64), flags: [...]}, stdout one JSON line per
    // scenario: {id, exit: 0|1|2|3 (as the exit status above), result (base64) | the stderr report}; the key is fetched once.
    const shared = parseArgs(rest);
    const key = await fetchKey(shared.url, shared.apiKey);
    for (const scenario of JSON.parse(fs.readFileSync(0, "utf8"))) {
      const options = { ...shared, model: scenario.model, ...parseArgs(scenario.flags ?? []) };
      let line;
      try {
        const result = await infer(options, Buffer.from(scenario.payload, "base64"), key);
        line = { id: scenario.id, exit: 0, result: result.toString("base64") };
      } catch (error) {
        const [status, report] = describe(error);
        line = { id: scenario.id, exit: status, ...report };
      }
      process.stdout.write(JSON.stringify(line) + "\n");
    }
    return 0;
  }
  throw new Error(`unknown command ${command}`);
}

function describe(error) {
  if (error instanceof ServerRefused)
    return [2, { error: "server_refused", status: error.status, code: error.code, message: error.detail }];
  if (error instanceof ResponseRejected) return [3, { error: "response_rejected", reason: error.message }];
  return [1, { error: "failure", reason: String(error?.stack || error) }];
}

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (error) => {
    const report = describe(error);
    process.stderr.write(JSON.stringify(report[1]) + "\n");
    process.exit(report[0]);
  },
);
