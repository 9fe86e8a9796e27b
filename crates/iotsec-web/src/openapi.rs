//! The OpenAPI 3.1 description of the API, served at `/api/openapi.json`. A test checks that
//! its paths and methods are exactly the router's ([`crate::app::api_routes`]).

use serde_json::{Value, json};

fn id_param() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" },
            "description": "Device id (its certificate CN)." })
}

fn q(name: &str, ty: &str, desc: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false,
            "schema": { "type": ty }, "description": desc })
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Responses every authenticated endpoint can give.
fn common(mut responses: Value, admin: bool) -> Value {
    let err = json!({ "content": { "application/json": { "schema": reference("Error") } } });
    let with = |desc: &str| {
        let mut e = err.clone();
        e["description"] = json!(desc);
        e
    };
    responses["401"] = with("No credentials, or an unknown or revoked token.");
    responses["429"] = with("Too many failed authentications from this address; see Retry-After.");
    if admin {
        responses["403"] =
            with("Authenticated, but not an admin (says nothing about the resource).");
    }
    responses
}

fn op(id: &str, summary: &str, params: Vec<Value>, responses: Value, admin: bool) -> Value {
    json!({
        "operationId": id,
        "summary": summary,
        "parameters": params,
        "responses": common(responses, admin),
    })
}

/// The document.
pub fn document() -> Value {
    let not_found = json!({ "description": "No such device.",
        "content": { "application/json": { "schema": reference("Error") } } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "iotsec fleet API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read the fleet registry, telemetry, rejected messages and the latest \
                audit report; revoke devices. Every endpoint except /healthz (and the dashboard's \
                static files, which hold no data) needs a bearer token (`iotsec token create \
                --role viewer|admin`) or an operator client certificate (admin). Viewers read; \
                admins also revoke devices and start firmware rollouts. Devices download firmware \
                from /firmware/{release} with their own client certificate."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearerAuth": [] }, { "operatorCertificate": [] }],
        "paths": {
            "/api/devices": { "get": op("listDevices", "Every registered device", vec![],
                json!({ "200": ok("The fleet.", json!({ "type": "object",
                    "properties": { "devices": { "type": "array", "items": reference("Device") } } })) }), false) },
            "/api/devices/{id}": { "get": op("getDevice", "One device", vec![id_param()],
                json!({ "200": ok("The device.", reference("Device")), "404": not_found.clone() }), false) },
            "/api/devices/{id}/revoke": { "post": op("revokeDevice",
                "Revoke a device: certificate onto the CRL, broker reloaded, registry marked (admin)",
                vec![id_param()],
                json!({ "200": ok("Revoked.", json!({ "type": "object", "properties": {
                        "device": { "type": "string" }, "status": { "const": "revoked" },
                        "serials": { "type": "array", "items": { "type": "string" } },
                        "broker_reloaded": { "type": "boolean" } } })),
                    "404": not_found.clone(),
                    "409": { "description": "Already revoked.",
                        "content": { "application/json": { "schema": reference("Error") } } } }), true) },
            "/api/devices/{id}/telemetry": { "get": op("getTelemetry",
                "Readings of a device in a time range, oldest first, paged by sequence number",
                vec![id_param(),
                     q("from", "integer", "Device time from (ms since the epoch, inclusive)."),
                     q("to", "integer", "Device time to (ms since the epoch, exclusive)."),
                     q("after", "integer", "Only readings after this seq: the previous page's next_after."),
                     q("limit", "integer", "Page size, 1..5000 (default 500).")],
                json!({ "200": ok("A page of readings.", json!({ "type": "object", "properties": {
                        "device": { "type": "string" },
                        "readings": { "type": "array", "items": reference("Reading") },
                        "next_after": { "type": ["integer", "null"],
                            "description": "Set when the page is full: pass it as `after`." } } })),
                    "400": { "description": "Bad query." },
                    "404": not_found }), false) },
            "/api/rejections": { "get": op("getRejections", "Rejected messages: counts by reason and the most recent",
                vec![q("limit", "integer", "Recent rejections to return, 1..1000 (default 100).")],
                json!({ "200": ok("Rejections.", json!({ "type": "object", "properties": {
                    "total": { "type": "integer" },
                    "counts": { "type": "array", "items": reference("ReasonCount") },
                    "recent": { "type": "array", "items": reference("Rejection") } } })) }), false) },
            "/api/audit": { "get": op("getAudit", "The latest audit report (iotsec audit --format json)", vec![],
                json!({ "200": ok("The report, as written by iotsec audit.", json!({ "type": "object" })),
                    "404": { "description": "No report configured or written yet." } }), false) },
            "/api/events": { "get": {
                "operationId": "streamEvents",
                "summary": "Live updates: server-sent events `fleet` with the device list and rejection counts",
                "parameters": [],
                "responses": common(json!({ "200": { "description": "An event stream.",
                    "content": { "text/event-stream": { "schema": reference("Snapshot") } } } }), false) } },
            "/api/firmware": { "get": op("listReleases", "Published firmware releases (iotsec fw publish)", vec![],
                json!({ "200": ok("The releases, oldest first.", json!({ "type": "object",
                    "properties": { "releases": { "type": "array", "items": reference("Release") } } })) }), false) },
            "/api/rollouts": {
                "get": op("listRollouts", "Every rollout, newest first, with each device's standing", vec![],
                    json!({ "200": ok("The rollouts.", json!({ "type": "object",
                        "properties": { "rollouts": { "type": "array", "items": reference("Rollout") } } })) }), false),
                "post": {
                    "operationId": "startRollout",
                    "summary": "Start a staged rollout of a release (admin)",
                    "parameters": [],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": reference("RolloutRequest") } } },
                    "responses": common(json!({
                        "201": ok("Started; the ingest notifies the first stage within a second.", reference("Rollout")),
                        "400": { "description": "Unknown release or device, bad stages or threshold, bad body.",
                            "content": { "application/json": { "schema": reference("Error") } } },
                        "404": { "description": "Firmware distribution is not configured ([ota])." },
                        "413": { "description": "Body over 64 KiB." } }), true) } },
            "/api/rollouts/{id}": { "get": op("getRollout", "One rollout",
                vec![json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" },
                    "description": "Rollout id." })],
                json!({ "200": ok("The rollout.", reference("Rollout")),
                    "404": { "description": "No such rollout, or no [ota] section.",
                        "content": { "application/json": { "schema": reference("Error") } } } }), false) },
            "/firmware/{release}": { "get": {
                "operationId": "downloadFirmware",
                "summary": "A release's bundle (signed manifest + image), for devices; single byte ranges resume a download",
                "security": [{ "deviceCertificate": [] }],
                "parameters": [
                    { "name": "release", "in": "path", "required": true, "schema": { "type": "string" },
                      "description": "Release id." },
                    { "name": "Range", "in": "header", "required": false, "schema": { "type": "string" },
                      "description": "bytes=FROM-[TO] or bytes=-N; several ranges are ignored." }],
                "responses": {
                    "200": { "description": "The whole bundle.",
                        "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                    "206": { "description": "The requested range; Content-Range says which.",
                        "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                    "401": { "description": "No device certificate." },
                    "403": { "description": "Not a registered, active device." },
                    "404": { "description": "No such release." },
                    "416": { "description": "The range starts past the end; Content-Range: bytes */size." } } } },
            "/api/whoami": { "get": op("whoami", "The caller's role", vec![],
                json!({ "200": ok("Who is calling.", json!({ "type": "object", "properties": {
                    "role": { "enum": ["viewer", "admin"] },
                    "credential": { "enum": ["token", "certificate"] },
                    "id": { "type": "string" } } })) }), false) },
            "/api/openapi.json": { "get": op("openapi", "This document", vec![],
                json!({ "200": ok("OpenAPI 3.1.", json!({ "type": "object" })) }), false) },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer",
                    "description": "A token from `iotsec token create`; 256 bits, stored only as a SHA-256 hash." },
                "operatorCertificate": { "type": "mutualTLS",
                    "description": "A client certificate chaining to [web] client_ca whose CN is in [web] operators (admin)." },
                "deviceCertificate": { "type": "mutualTLS",
                    "description": "A device certificate chaining to [web] client_ca whose CN is a registered, active device." }
            },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "string" } }, "required": ["error"] },
                "Device": { "type": "object", "properties": {
                    "id": { "type": "string" }, "status": { "enum": ["active", "revoked"] },
                    "online": { "type": "boolean" }, "last_seen_ms": { "type": ["integer", "null"] },
                    "firmware": { "type": ["string", "null"] }, "accepted": { "type": "integer" },
                    "rejected": { "type": "integer" }, "legacy": { "type": "boolean" },
                    "key_version": { "type": "integer" } } },
                "Reading": { "type": "object", "properties": {
                    "seq": { "type": "integer" }, "ts_ms": { "type": "integer" },
                    "received_ms": { "type": "integer" },
                    "payload": { "description": "The verified JSON payload." } } },
                "ReasonCount": { "type": "object", "properties": {
                    "reason": { "type": "string" }, "count": { "type": "integer" } } },
                "Rejection": { "type": "object", "properties": {
                    "received_ms": { "type": "integer" }, "device": { "type": ["string", "null"] },
                    "reason": { "type": "string" }, "size": { "type": "integer" } } },
                "Release": { "type": "object", "properties": {
                    "id": { "type": "string", "description": "First 16 hex digits of the SHA-256 of the signed manifest." },
                    "version": { "type": "string" }, "hardware_id": { "type": "string" },
                    "security_counter": { "type": "integer" }, "size": { "type": "integer" },
                    "sha256": { "type": "string" }, "file": { "type": "string" },
                    "published_ms": { "type": "integer" } } },
                "RolloutRequest": { "type": "object", "required": ["release"], "properties": {
                    "release": { "type": "string", "description": "Release id, id prefix or version." },
                    "devices": { "type": "array", "items": { "type": "string" },
                        "description": "Target devices in order (the first stage takes the first ones)." },
                    "all": { "type": "boolean", "description": "Every active device instead of a list." },
                    "stages": { "type": "string", "description": "Cumulative stage sizes, e.g. 1,10%,100% (default)." },
                    "max_failure_rate": { "type": "number", "description": "Halt when a stage's failed share exceeds this (default 0.2)." } } },
                "Rollout": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "release": { "type": "string" },
                    "status": { "enum": ["running", "halted", "completed"] },
                    "stage": { "type": "integer", "description": "Current stage, 1-based." },
                    "stages": { "type": "array", "items": { "type": "integer" }, "description": "Devices per stage." },
                    "max_failure_rate": { "type": "number" },
                    "halt": { "type": ["object", "null"], "properties": {
                        "stage": { "type": "integer" }, "failed": { "type": "integer" }, "total": { "type": "integer" } } },
                    "created_ms": { "type": "integer" }, "updated_ms": { "type": "integer" },
                    "counts": { "type": "object", "additionalProperties": { "type": "integer" } },
                    "devices": { "type": "array", "items": reference("RolloutDevice") } } },
                "RolloutDevice": { "type": "object", "properties": {
                    "device": { "type": "string" }, "stage": { "type": "integer" },
                    "state": { "type": "string", "description": "waiting, notified, downloading, verifying, trial, confirmed, rolled_back, rejected, failed or timed_out." },
                    "progress": { "type": ["integer", "null"] }, "reason": { "type": ["string", "null"] },
                    "notified_ms": { "type": ["integer", "null"] }, "notices": { "type": "integer" } } },
                "Snapshot": { "type": "object", "properties": {
                    "at_ms": { "type": "integer" },
                    "devices": { "type": "array", "items": reference("Device") },
                    "rejections": { "type": "array", "items": reference("ReasonCount") } } }
            }
        }
    })
}

/// `(METHOD, path)` of every operation in the document.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys() {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_and_router_list_the_same_operations() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut routes: Vec<(String, String)> = crate::app::api_routes()
            .into_iter()
            .chain(crate::app::DEVICE_ROUTES.iter().copied())
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(operations(&doc), routes);
    }

    #[test]
    fn every_schema_reference_resolves_and_ids_are_unique() {
        let doc = document();
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"").skip(1) {
            let target = r.split('"').next().unwrap();
            let name = target.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling {target}"
            );
        }
        let mut ids: Vec<&str> = text
            .split("\"operationId\":\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
