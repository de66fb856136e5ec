import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkRequest } from '../../src/proxy/request-checks.js';

const req = (url: string, headers: string[], method = 'GET') => ({ method, url, rawHeaders: headers });

describe('request checks (what node’s HTTP server lets through)', () => {
  const ok: [string, ReturnType<typeof req>][] = [
    ['origin-form with a Host', req('/a?b=c', ['Host', 'example.com'])],
    ['Host with a port', req('/', ['host', 'example.com:8080'])],
    ['Host as an IPv4 address', req('/', ['Host', '192.0.2.1:80'])],
    ['Host as an IPv6 literal', req('/', ['Host', '[2001:db8::1]:8080'])],
    ['Host with pct-encoding and sub-delims', req('/', ['Host', 'a%41b-c_d~e!$&\'()*+,;='])],
    ['empty Host (RFC 9110 §7.2)', req('/', ['Host', ''])],
    ['no Host (HTTP/1.0; node refuses it in HTTP/1.1)', req('/', [])],
    ['absolute-form naming the Host', req('http://Example.com/a', ['Host', 'example.com'])],
    ['absolute-form with the default port left out of Host', req('http://example.com:80/a', ['Host', 'example.com'])],
    ['https absolute-form with the default port in Host', req('https://example.com/a', ['Host', 'example.com:443'])],
    ['asterisk-form for OPTIONS', req('*', ['Host', 'example.com'], 'OPTIONS')],
    ['a header with "_" that is not a framing one', req('/', ['Host', 'example.com', 'X_Custom', '1'])],
  ];
  for (const [name, r] of ok) it(`passes ${name}`, () => assert.equal(checkRequest(r), undefined));

  const bad: [string, ReturnType<typeof req>][] = [
    ['two Host headers', req('/', ['Host', 'a.example', 'Host', 'b.example'])],
    ['two Host headers with one value', req('/', ['Host', 'a.example', 'host', 'a.example'])],
    ['Host with a space', req('/', ['Host', 'a.example b.example'])],
    ['Host with userinfo', req('/', ['Host', 'user@a.example'])],
    ['Host with a path', req('/', ['Host', 'a.example/x'])],
    ['Host with a backslash', req('/', ['Host', 'a.example\\x'])],
    ['Host with a non-numeric port', req('/', ['Host', 'a.example:8o'])],
    ['absolute-form naming another host', req('http://b.example/', ['Host', 'a.example'])],
    ['absolute-form naming another port', req('http://a.example:8080/', ['Host', 'a.example'])],
    ['absolute-form without Host', req('http://a.example/', [])],
    ['absolute-form with userinfo', req('http://user@a.example/', ['Host', 'user@a.example'])],
    ['absolute-form of another scheme', req('ftp://a.example/', ['Host', 'a.example'])],
    ['a target in no form', req('a/b', ['Host', 'a.example'])],
    ['asterisk-form for GET', req('*', ['Host', 'a.example'])],
    ['Transfer_Encoding', req('/', ['Host', 'a.example', 'Transfer_Encoding', 'chunked'])],
    ['content_length', req('/', ['Host', 'a.example', 'content_length', '5'])],
  ];
  for (const [name, r] of bad) {
    it(`refuses ${name}`, () => {
      const why = checkRequest(r);
      assert.equal(typeof why, 'string');
      assert.ok(why!.length > 0 && why!.length < 80, 'a short reason');
    });
  }
});
