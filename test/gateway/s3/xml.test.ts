import { describe, expect, test } from "bun:test";
import { parseXmlBody, S3_XMLNS, toXml } from "../../../gateway/s3/xml.ts";

describe("S3 XML", () => {
  test("the encoder writes a declaration, attributes, repeated elements, and leaves out undefined values", () => {
    expect(
      toXml("R", { "@_xmlns": S3_XMLNS, A: "x", B: undefined, C: [{ K: 1 }, { K: 2 }], D: true, E: "" }),
    ).toBe(
      `<?xml version="1.0" encoding="UTF-8"?>\n<R xmlns="${S3_XMLNS}"><A>x</A><C><K>1</K></C><C><K>2</K></C><D>true</D><E></E></R>`,
    );
  });

  test("the encoder escapes markup in text", () => {
    expect(toXml("K", { "#text": `a<b>&"c"` })).toContain("<K>a&lt;b&gt;&amp;&quot;c&quot;</K>");
  });

  test("the parser reads repeated parts as arrays and decodes character references (Go writes &#34;)", () => {
    const doc = parseXmlBody(
      "<CompleteMultipartUpload><Part><ETag>&#34;ab&#34;</ETag><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
    );
    expect(doc).toEqual({ CompleteMultipartUpload: { Part: [{ ETag: '"ab"', PartNumber: "1" }] } });
  });

  test("the parser refuses DOCTYPEs and markup that is not well-formed", () => {
    expect(() => parseXmlBody('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')).toThrow(/DOCTYPE/);
    expect(() => parseXmlBody("<a><b></a>")).toThrow(/well-formed/);
  });
});
