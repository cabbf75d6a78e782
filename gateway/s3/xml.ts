/**
 * XML of the S3 wire format, through fast-xml-parser: {@link toXml} encodes response
 * documents, {@link parseXmlBody} decodes the few request bodies S3 has
 * (CompleteMultipartUpload, DeleteObjects).
 *
 * Encoding rules: object keys are element names (a key starting with `@_` is an
 * attribute), arrays repeat the element, `undefined` leaves it out, text is escaped.
 */
import { XMLBuilder, XMLParser } from "fast-xml-parser";
import { S3Error } from "./s3-errors.ts";

/** The S3 document namespace, on every response root element. */
export const S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/";

/** A value the encoder accepts. */
export type XmlValue = string | number | boolean | undefined | XmlObject | XmlValue[];
/** An element's children (and `@_`-prefixed attributes). */
export interface XmlObject {
  readonly [name: string]: XmlValue;
}

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  suppressEmptyNode: false,
  processEntities: true,
  format: false,
});

const DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n';

/**
 * A whole XML document with `root` as its element.
 *
 * @example
 * toXml("LocationConstraint", { "@_xmlns": S3_XMLNS, "#text": "" })
 */
export function toXml(root: string, body: XmlObject | string): string {
  return DECLARATION + builder.build({ [root]: body });
}

/** Names that always parse as arrays (repeated elements of the request bodies). */
const ARRAY_ELEMENTS = new Set(["Part", "Object"]);

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: true,
  processEntities: true,
  // Numeric character references (Go's encoder writes quotes as &#34;) need this too.
  htmlEntities: true,
  isArray: (name) => ARRAY_ELEMENTS.has(name),
});

/**
 * Parses a request body. Documents with a DOCTYPE are refused (no entity expansion
 * games); anything not well-formed is MalformedXML.
 */
export function parseXmlBody(text: string): Record<string, unknown> {
  if (/<!DOCTYPE/i.test(text)) throw new S3Error("MalformedXML", "XML with a DOCTYPE is not accepted");
  try {
    const parsed = parser.parse(text, true) as unknown;
    if (typeof parsed !== "object" || parsed === null) throw new Error("not an element");
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new S3Error(
      "MalformedXML",
      `The XML you provided was not well-formed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}
