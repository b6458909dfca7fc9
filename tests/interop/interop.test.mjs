// SPDX-License-Identifier: Apache-2.0
// Interop: the real OpenTelemetry JS SDK exports spans to faultline over every exporter
// protocol (http/json, http/protobuf, grpc; plain and gzip), and every span is then found
// through faultline's API with its fields intact.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { trace, SpanKind, SpanStatusCode, context } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPTraceExporter as HttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as HttpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { startServer } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => {
  const r = await server.stop();
  assert.equal(r.code, 0, `faultline exited with ${JSON.stringify(r)}`);
});

// Emit one small trace (SERVER root -> CLIENT child -> INTERNAL grandchild with an error
// and an exception event) plus a batch of extra spans, and return what was recorded.
async function exportWith(exporter, service, extra = 50) {
  const recorded = [];
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service, 'deployment.environment': 'interop' }),
    spanProcessors: [new BatchSpanProcessor(exporter, { maxExportBatchSize: 1000, scheduledDelayMillis: 50 })],
  });
  const tracer = provider.getTracer('faultline-interop', '1.0.0');
  const root = tracer.startSpan('POST /checkout', { kind: SpanKind.SERVER, attributes: {
    'http.request.method': 'POST', 'http.route': '/checkout', 'http.response.status_code': 200,
    'ratio': 0.25, 'flag': true, 'tags': ['a', 'b'], 'quote': 'he said "hi"\n' } });
  const ctx1 = trace.setSpan(context.active(), root);
  const child = tracer.startSpan('charge', { kind: SpanKind.CLIENT, attributes: { 'server.address': 'payment' } }, ctx1);
  const ctx2 = trace.setSpan(ctx1, child);
  const grand = tracer.startSpan('db.query', { kind: SpanKind.INTERNAL }, ctx2);
  grand.recordException(new Error('card declined'));
  grand.setStatus({ code: SpanStatusCode.ERROR, message: 'card declined' });
  for (const s of [grand, child, root]) { s.end(); }
  recorded.push({ span: grand, name: 'db.query', kind: 1, status: 'error', parent: child },
    { span: child, name: 'charge', kind: 3, status: 'unset', parent: root },
    { span: root, name: 'POST /checkout', kind: 2, status: 'unset', parent: null });
  for (let i = 0; i < extra; i++) {
    const s = tracer.startSpan(`job-${i}`, { kind: SpanKind.INTERNAL, attributes: { i } });
    s.end();
    recorded.push({ span: s, name: `job-${i}`, kind: 1, status: 'unset', parent: null });
  }
  await provider.forceFlush();
  await provider.shutdown();
  return recorded;
}

async function checkStored(recorded, service) {
  const byTrace = new Map();
  for (const r of recorded) {
    const id = r.span.spanContext().traceId;
    if (!byTrace.has(id)) byTrace.set(id, []);
    byTrace.get(id).push(r);
  }
  for (const [traceId, spans] of byTrace) {
    const res = await fetch(`${server.api}/api/traces/${traceId}`);
    assert.equal(res.status, 200, `trace ${traceId} not found`);
    const body = await res.json();
    assert.equal(body.trace_id, traceId);
    assert.equal(body.spans.length, spans.length, `span count of ${traceId}`);
    for (const r of spans) {
      const sc = r.span.spanContext();
      const got = body.spans.find((s) => s.span_id === sc.spanId);
      assert.ok(got, `span ${sc.spanId} missing`);
      assert.equal(got.name, r.name);
      assert.equal(got.service, service);
      assert.equal(got.parent_span_id, r.parent ? r.parent.spanContext().spanId : '');
      assert.equal(got.status_code, r.status);
      if (r.name === 'POST /checkout') {
        assert.equal(got.attributes['http.response.status_code'], 200);
        assert.equal(got.attributes['ratio'], 0.25);
        assert.equal(got.attributes['flag'], true);
        assert.deepEqual(got.attributes['tags'], ['a', 'b']);
        assert.equal(got.attributes['quote'], 'he said "hi"\n');
      }
      if (r.name === 'db.query') {
        assert.equal(got.events.length, 1);
        assert.equal(got.events[0].name, 'exception');
        assert.equal(got.events[0].attributes['exception.message'], 'card declined');
        assert.equal(got.status_message, 'card declined');
      }
    }
  }
}

const httpBase = () => `http://127.0.0.1:${server.ports['otlp-http']}/v1/traces`;
const grpcBase = () => `http://127.0.0.1:${server.ports['otlp-grpc']}`;

const cases = [
  ['http/json', () => new HttpJsonExporter({ url: httpBase() })],
  ['http/json gzip', () => new HttpJsonExporter({ url: httpBase(), compression: 'gzip' })],
  ['http/protobuf', () => new HttpProtoExporter({ url: httpBase() })],
  ['http/protobuf gzip', () => new HttpProtoExporter({ url: httpBase(), compression: 'gzip' })],
  ['grpc', () => new GrpcExporter({ url: grpcBase() })],
  ['grpc gzip', () => new GrpcExporter({ url: grpcBase(), compression: 'gzip' })],
];

for (const [name, make] of cases) {
  test(`OpenTelemetry JS SDK exports over ${name}`, async () => {
    const service = `interop-${name.replace(/[^a-z]+/g, '-')}`;
    const recorded = await exportWith(make(), service);
    await checkStored(recorded, service);
    const svc = await (await fetch(`${server.api}/api/services`)).json();
    const mine = svc.services.find((s) => s.name === service);
    assert.ok(mine, `service ${service} listed`);
    assert.ok(mine.operations.includes('POST /checkout'));
  });
}
