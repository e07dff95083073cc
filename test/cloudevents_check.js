// Validates CloudEvents with the CNCF SDK (npm package cloudevents), for
// test/t/095_cloudevents.pl.  Reads a JSON array of HTTP requests
// [{"headers": [[name, value], ...], "body": "..."}] on stdin; for each,
// HTTP.toEvent() reads the event (structured mode is told by the content
// type) and validate() checks it against the CloudEvents 1.0 spec.  Prints
// one JSON line per request: the event's attributes, or {"error": ...}.
"use strict";
const { HTTP } = require("cloudevents");

const requests = JSON.parse(require("fs").readFileSync(0, "utf8"));
for (const r of requests) {
  const headers = {};
  for (const [name, value] of r.headers) headers[name.toLowerCase()] = value;
  try {
    const event = HTTP.toEvent({ headers, body: r.body });
    if (Array.isArray(event)) throw new Error("a batch, not one event");
    event.validate();
    console.log(JSON.stringify({
      specversion: event.specversion, id: event.id, source: event.source, type: event.type,
      subject: event.subject, time: event.time, datacontenttype: event.datacontenttype,
      data: event.data, traceparent: event.traceparent, tracestate: event.tracestate,
      truncated: event.truncated, extensions: Object.keys(event.toJSON()).sort(),
    }));
  } catch (e) {
    console.log(JSON.stringify({ error: String(e && e.message ? e.message : e),
                                 errors: e && e.errors ? e.errors : undefined }));
  }
}
