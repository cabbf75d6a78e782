/**
 * NBD wire constants.
 *
 * ============================================================================
 *  THESE VALUES ARE THE WIRE PROTOCOL. THEY NEVER CHANGE.
 *  They are fixed by the NBD protocol specification
 *  (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md) and are
 *  what qemu, libnbd, nbdkit and the Linux kernel put on the wire. Add new
 *  values as the spec grows; never edit or renumber an existing one.
 * ============================================================================
 *
 * Every group names the section of proto.md it comes from. Values are written
 * as in the spec (hex for magics, bit shifts for flags) so they can be checked
 * against it at a glance. 64-bit magics are bigint because they do not fit a
 * safe integer.
 *
 * @module
 */

/** Magic numbers. proto.md "Handshake", "Fixed newstyle negotiation", "Transmission". */
export const NBD_MAGIC = {
  /** ASCII "NBDMAGIC": first 8 bytes the server sends (INIT_PASSWD). */
  INIT: 0x4e42444d41474943n,
  /** ASCII "IHAVEOPT": second server magic (newstyle), and the prefix of every client option. */
  OPTS: 0x49484156454f5054n,
  /** Prefix of every option reply in fixed newstyle. */
  REPLY: 0x0003e889045565a9n,
  /** NBD_REQUEST_MAGIC: every transmission request. */
  REQUEST: 0x25609513,
  /** NBD_SIMPLE_REPLY_MAGIC: every simple reply. */
  SIMPLE_REPLY: 0x67446698,
  /** NBD_STRUCTURED_REPLY_MAGIC: every structured reply chunk. */
  STRUCTURED_REPLY: 0x668e33ef,
} as const;

/** Handshake flags (server to client, 16 bits). proto.md "Handshake flags". */
export const NBD_HANDSHAKE_FLAG = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Client flags (client to server, 32 bits). proto.md "Client flags". */
export const NBD_CLIENT_FLAG = {
  C_FIXED_NEWSTYLE: 1 << 0,
  C_NO_ZEROES: 1 << 1,
} as const;

/** Option types sent during option haggling. proto.md "Option types". */
export const NBD_OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  /** 4 was NBD_OPT_PEEK_EXPORT, withdrawn. */
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

/** Bit 31 marks an option reply type as an error. proto.md "Option reply types". */
const REP_ERR = 0x80000000;

/** Option reply types. proto.md "Option reply types". Errors have bit 31 set. */
export const NBD_REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: REP_ERR + 1,
  ERR_POLICY: REP_ERR + 2,
  ERR_INVALID: REP_ERR + 3,
  ERR_PLATFORM: REP_ERR + 4,
  ERR_TLS_REQD: REP_ERR + 5,
  ERR_UNKNOWN: REP_ERR + 6,
  ERR_SHUTDOWN: REP_ERR + 7,
  ERR_BLOCK_SIZE_REQD: REP_ERR + 8,
  ERR_TOO_BIG: REP_ERR + 9,
  ERR_EXT_HEADER_REQD: REP_ERR + 10,
} as const;

/** Information types in NBD_OPT_INFO / NBD_OPT_GO and NBD_REP_INFO. proto.md "NBD_OPT_INFO". */
export const NBD_INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags (16 bits, per export). proto.md "Transmission flags". */
export const NBD_FLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
  BLOCK_STAT_PAYLOAD: 1 << 12,
} as const;

/** Request (command) types. proto.md "Request types". */
export const NBD_CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;

/** Command flags (16 bits, per request). proto.md "Command flags". */
export const NBD_CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
  PAYLOAD_LEN: 1 << 5,
} as const;

/** Structured reply chunk flags. proto.md "Structured reply flags". */
export const NBD_REPLY_FLAG = {
  DONE: 1 << 0,
} as const;

/** Bit 15 marks a structured reply type as an error chunk. proto.md "Structured reply types". */
const REPLY_ERR = 1 << 15;

/** Structured reply chunk types. proto.md "Structured reply types". */
export const NBD_REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  BLOCK_STATUS_EXT: 6,
  ERROR: REPLY_ERR + 1,
  ERROR_OFFSET: REPLY_ERR + 2,
} as const;

/** Status flags of the `base:allocation` metadata context. proto.md "Metadata contexts". */
export const NBD_STATE = {
  HOLE: 1 << 0,
  ZERO: 1 << 1,
} as const;

/**
 * Error values in replies. proto.md "Error values": fixed numbers (the common
 * Linux errno values), not the host's errno.
 */
export const NBD_ERRNO = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** The one metadata context defined by the spec. proto.md "Metadata querying". */
export const BASE_ALLOCATION = "base:allocation";

/** Fixed sizes of wire structures, in bytes. Derived from the layouts in proto.md. */
export const NBD_SIZE = {
  /** INIT magic (8) + OPTS magic (8) + handshake flags (2). */
  GREETING: 18,
  /** Option header: magic (8) + option (4) + length (4). */
  OPTION_HEADER: 16,
  /** Option reply header: magic (8) + option (4) + type (4) + length (4). */
  OPTION_REPLY_HEADER: 20,
  /** Reserved zeroes after the NBD_OPT_EXPORT_NAME reply (unless NO_ZEROES). */
  EXPORT_NAME_PADDING: 124,
  /** Request: magic (4) + flags (2) + type (2) + handle (8) + offset (8) + length (4). */
  REQUEST: 28,
  /** Simple reply: magic (4) + error (4) + handle (8). */
  SIMPLE_REPLY: 16,
  /** Structured reply chunk header: magic (4) + flags (2) + type (2) + handle (8) + length (4). */
  STRUCTURED_REPLY_HEADER: 20,
  /** Longest string the spec allows (export names, queries, messages). proto.md "Conventions". */
  MAX_STRING: 4096,
} as const;
