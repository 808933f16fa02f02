"""flywheel's local ClickHouse engine: chDB (the ClickHouse engine, in-process) behind the
ClickHouse HTTP interface.

Why this exists: Debian ships ClickHouse 18.16 (2018), Docker is not available, and only the
package registries are reachable. PyPI's `chdb-core` is a modern ClickHouse engine, but only one
process may open a data path. This server owns that path and speaks enough of the ClickHouse
HTTP protocol for the official `clickhouse` Rust crate (RowBinary, validation, LZ4/ZSTD
compressed inserts, multipart parameters), curl and the `clickhouse-client`-style GET queries.

Production uses a real ClickHouse server; nothing in flywheel's Rust code knows this shim exists.

Contract:
  * `POST /?query=INSERT ... FORMAT F` with the data in the body (chunked or sized, optionally in
    ClickHouse's compressed block framing with `decompress=1`) is spooled to a file, then inserted
    with `FROM INFILE`: an insert the engine fails is an error on the wire, never a 200.
  * `POST /` with SQL in the body (or `?query=`) runs it; the result uses the statement's FORMAT
    clause, else `default_format`, else TabSeparated.
  * Every other URL parameter is a ClickHouse setting, applied for that request only.
  * Errors answer with ClickHouse's status mapping, `X-ClickHouse-Exception-Code` and a body
    `Code: N. DB::Exception: ...`, exactly as a real server does.
  * `GET /ping` answers `Ok.`; every query needs the user `default` and the engine's password
    (`X-ClickHouse-User`/`X-ClickHouse-Key` headers, HTTP basic auth or `user`/`password` URL
    parameters, as ClickHouse takes them), else 401 with code 516 (AUTHENTICATION_FAILED).
"""

import argparse
import base64
import hmac
import ipaddress
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# URL parameters that are part of the HTTP protocol, not ClickHouse settings.
PROTOCOL_PARAMS = {
    "query",
    "database",
    "default_format",
    "decompress",
    "compress",
    "user",
    "password",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "wait_end_of_query",
    "buffer_size",
    "enable_http_compression",
    "http_zlib_compression_level",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "add_http_cors_header",
    "role",
}

# Formats whose streamed chunks are each a complete document (header or prefix repeated), so
# they are buffered; row formats below can be streamed chunk by chunk.
STREAMABLE = {"rowbinary", "rowbinarywithnamesandtypes", "rowbinarywithnames", "tabseparated", "tsv", "csv", "jsoneachrow", "jsoncompacteachrow", "native"}
WITH_HEADER = {"rowbinarywithnamesandtypes", "rowbinarywithnames"}

FORMAT_CONTENT_TYPES = {
    "json": "application/json; charset=UTF-8",
    "jsoneachrow": "application/x-ndjson; charset=UTF-8",
    "jsoncompact": "application/json; charset=UTF-8",
    "csv": "text/csv; charset=UTF-8; header=absent",
    "csvwithnames": "text/csv; charset=UTF-8; header=present",
    "tabseparated": "text/tab-separated-values; charset=UTF-8",
    "tsv": "text/tab-separated-values; charset=UTF-8",
}

# ClickHouse's mapping of exception codes to HTTP statuses (src/Server/HTTPHandler.cpp).
BAD_REQUEST_CODES = {
    27, 32, 33, 34, 35, 36, 38, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 55, 56, 57, 62,
    69, 70, 72, 73, 75, 117, 130, 131, 190, 225, 242, 243, 250, 252, 253, 254, 255, 290, 291, 375,
    410, 457, 456, 491, 492,
}
NOT_FOUND_CODES = {60, 81, 83, 84, 85}
AUTH_CODES = {192, 193, 194, 195, 196, 516}

SQL_COMMENT = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*", re.S)
TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I)
INSERT_FORMAT = re.compile(r"^(?P<head>\s*INSERT\s+INTO\s+.*?)\s+FORMAT\s+(?P<fmt>[A-Za-z0-9_]+)\s*(?P<rest>.*)$", re.I | re.S)
ERROR_CODE = re.compile(r"Code:\s*(\d+)")
DEBUG = bool(os.environ.get("FLYWHEEL_ENGINE_DEBUG"))
# Fault injection for the collector's tests: every INSERT takes this long (a slow ClickHouse).
INSERT_DELAY = float(os.environ.get("FLYWHEEL_ENGINE_INSERT_DELAY_MS") or 0) / 1000


class QueryError(Exception):
    def __init__(self, code, message, status=None):
        super().__init__(message)
        self.code = code
        self.status = status or http_status(code)


def http_status(code):
    if code in BAD_REQUEST_CODES:
        return 400
    if code in NOT_FOUND_CODES:
        return 404
    if code in AUTH_CODES:
        return 401
    return 500


def engine_error(exc):
    text = str(exc)
    # chDB prefixes wrapper text ("Streaming query failed: ...") before ClickHouse's own message.
    start = text.find("Code:")
    if start > 0:
        text = text[start:]
    m = ERROR_CODE.search(text)
    code = int(m.group(1)) if m else 1000
    if not text.startswith("Code:"):
        text = f"Code: {code}. DB::Exception: {text}"
    return QueryError(code, text)


def first_keyword(sql):
    body = SQL_COMMENT.sub("", sql, count=1)
    m = re.match(r"\(*\s*([A-Za-z]+)", body)
    return m.group(1).upper() if m else ""


class Engine:
    """Owns the chDB connection. One lock serialises requests because session state (current
    database, settings applied with SET) is shared by the whole connection."""

    def __init__(self, path):
        import chdb

        self.version = chdb.__version__
        self.conn = chdb.connect(path)
        self.lock = threading.Lock()
        self.database = "default"
        self.applied = {}  # settings set away from their default by an earlier request

    # --- per-request state -------------------------------------------------------------------
    def prepare(self, database, settings):
        database = database or "default"
        if database != self.database:
            self._run(f"USE `{database.replace('`', '')}`")
            self.database = database
        for name in [n for n in self.applied if n not in settings]:
            self._run(f"SET {name} = DEFAULT")
            del self.applied[name]
        for name, value in settings.items():
            if self.applied.get(name) != value:
                self._run(f"SET {name} = {quote_setting(value)}")
                self.applied[name] = value

    def _run(self, sql, fmt="TabSeparated", params=None):
        try:
            return self.conn.query(sql, fmt, params=params or {})
        except Exception as exc:  # chDB raises RuntimeError/ChdbError with ClickHouse's text
            raise engine_error(exc) from None

    # --- statements ----------------------------------------------------------------------------
    def query_buffered(self, sql, fmt, params):
        return self._run(sql, fmt, params).bytes()

    def query_stream(self, sql, fmt, params):
        """Yields result chunks; the first chunk is fetched before returning so that errors
        raised at the start become a proper error response."""
        try:
            stream = self.conn.send_query(sql, fmt, params=params or {})
            first = stream.fetch()
        except Exception as exc:
            raise engine_error(exc) from None
        if first is None:
            # A streamed result with no rows carries no bytes at all, not even the header that
            # RowBinaryWithNamesAndTypes clients need: run it buffered to get the header.
            return iter([self.query_buffered(sql, fmt, params)])
        return self._chunks(stream, first, fmt.lower())

    def _chunks(self, stream, first, fmt):
        data = first.bytes()
        header = header_length(data) if fmt in WITH_HEADER else 0
        prefix = data[:header]
        yield data
        while True:
            try:
                chunk = stream.fetch()
            except Exception as exc:
                raise engine_error(exc) from None
            if chunk is None:
                return
            data = chunk.bytes()
            if header and data.startswith(prefix):
                data = data[header:]  # every chunk repeats the names/types header
            yield data

    def insert_file(self, head, fmt, path):
        """Runs `head FROM INFILE path FORMAT fmt`. Why not chDB's streaming inserter: its
        `finish()` swallows errors raised when the rows are written (too many partitions for
        one block, constraints...) and reports the rows as written although none are stored.
        The query path raises them, as a ClickHouse server answers them."""
        quoted = path.replace("\\", "\\\\").replace("'", "\\'")
        result = self._run(f"{head} FROM INFILE '{quoted}' FORMAT {fmt}")
        return result.rows_written(), result.bytes_written()


def spool(chunks, directory):
    """Writes a request body to a file of its own in `directory` (constant memory, outside the
    engine lock) and returns its path. The caller removes it."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"insert-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}.bin")
    try:
        with open(path, "wb") as f:
            for chunk in chunks:
                if chunk:
                    f.write(chunk)
    except BaseException:
        remove_quietly(path)
        raise
    return path


def remove_quietly(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def quote_setting(value):
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def read_varint(buf, pos):
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def header_length(buf):
    """Length of a RowBinaryWithNames[AndTypes] header: column count, names, types."""
    n, pos = read_varint(buf, 0)
    strings = n * 2
    for _ in range(strings):
        length, pos = read_varint(buf, pos)
        pos += length
    return min(pos, len(buf))


def decompress_blocks(chunks):
    """Decodes ClickHouse's native compressed framing: 16-byte checksum, method byte, 4-byte
    compressed size (header included), 4-byte uncompressed size, payload."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 25:
            method = buf[16]
            compressed, raw = struct.unpack_from("<II", buf, 17)
            total = 16 + compressed
            if len(buf) < total:
                break
            payload = bytes(buf[25:total])
            del buf[:total]
            if method == 0x82:
                import lz4.block

                yield lz4.block.decompress(payload, uncompressed_size=raw)
            elif method == 0x90:
                import zstandard

                yield zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw)
            elif method == 0x02:
                yield payload
            else:
                raise QueryError(271, f"Code: 271. DB::Exception: Unknown compression method 0x{method:02x}. (CANNOT_DECOMPRESS)")
    if buf:
        raise QueryError(271, "Code: 271. DB::Exception: Truncated compressed block at the end of the body. (CANNOT_DECOMPRESS)")


def parse_multipart(body, content_type):
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise QueryError(62, "Code: 62. DB::Exception: multipart body without boundary. (SYNTAX_ERROR)", 400)
    boundary = b"--" + m.group(1).encode()
    fields = {}
    for part in body.split(boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.lstrip(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if name:
            fields[name.group(1).decode()] = value[:-2] if value.endswith(b"\r\n") else value
    return fields


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "flywheel-chdb"
    engine = None  # set at start-up
    spool_dir = None  # where insert bodies wait for the engine (under the data directory)
    password = None  # required of every query when set; None only on loopback without a file
    password_file = None

    def setup(self):
        super().setup()
        # Nagle's algorithm adds ~40 ms to every small response on a keep-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # access logs would flood the engine log
        pass

    def quickack(self):
        if hasattr(socket, "TCP_QUICKACK"):
            try:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass

    # --- body -----------------------------------------------------------------------------------
    def body_chunks(self):
        for data in self._body_chunks():
            yield data
        self.body_done = True

    def _body_chunks(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                self.quickack()
                line = self.rfile.readline(65537)
                if not line:
                    # The client went away before the last chunk: nothing of this body may be
                    # committed (a half insert that the client will retry in full).
                    raise QueryError(394, "Code: 394. DB::Exception: the request body ended before its last chunk (client disconnected). (QUERY_WAS_CANCELLED)")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    self.quickack()
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        raise QueryError(394, "Code: 394. DB::Exception: the request body ended inside a chunk (client disconnected). (QUERY_WAS_CANCELLED)")
                    remaining -= len(data)
                    yield data
                self.rfile.readline(3)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                self.quickack()
                data = self.rfile.read(min(remaining, 1 << 20))
                if not data:
                    raise QueryError(394, "Code: 394. DB::Exception: the request body is shorter than its Content-Length (client disconnected). (QUERY_WAS_CANCELLED)")
                remaining -= len(data)
                yield data

    # --- responses ------------------------------------------------------------------------------
    def send_plain(self, status, body, headers=None, content_type="text/plain; charset=UTF-8"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            # The rest of the request body was not read (an error before it): the connection
            # closes after this answer, and a keep-alive client must know not to reuse it.
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_error_response(self, err):
        body = (str(err).rstrip("\n") + "\n").encode()
        self.send_plain(err.status, body, {"X-ClickHouse-Exception-Code": str(err.code)})

    def send_stream(self, chunks, fmt, summary):
        content_type = FORMAT_CONTENT_TYPES.get(fmt.lower(), "application/octet-stream")
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("X-ClickHouse-Format", fmt)
        self.send_header("X-ClickHouse-Summary", json.dumps(summary))
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for data in chunks:
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except QueryError as err:
            # Mid-stream failure: ClickHouse appends the exception text as the last chunk; the
            # client must see it in one read, so it is written as a single chunk.
            text = ("\n" + str(err).rstrip("\n") + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(text), text))
        self.wfile.write(b"0\r\n\r\n")

    # --- verbs ----------------------------------------------------------------------------------
    def do_GET(self):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path in ("/ping", "/") and "query" not in params:
            self.send_plain(200, b"Ok.\n")
            return
        if url.path == "/replicas_status":
            self.send_plain(200, b"Ok.\n")
            return
        self.handle_query(params, sql_body=b"", readonly=True)

    def do_POST(self):
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            fields = parse_multipart(b"".join(self.body_chunks()), content_type)
            for name, value in fields.items():
                params[name] = value.decode("utf-8", "replace")
            self.handle_query(params, sql_body=b"")
        else:
            self.handle_query(params, sql_body=None)

    def authenticate(self, params):
        """The credentials as ClickHouse reads them: headers, then basic auth, then URL parameters."""
        if self.password is None:
            return
        user = self.headers.get("X-ClickHouse-User")
        key = self.headers.get("X-ClickHouse-Key")
        auth = self.headers.get("Authorization", "")
        if user is None and key is None and auth.lower().startswith("basic "):
            try:
                user, _, key = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, key = None, None
        if user is None and key is None:
            user, key = params.get("user"), params.get("password")
        user = user or "default"
        if user == "default" and key is not None and hmac.compare_digest(key.encode("utf-8"), self.password.encode("utf-8")):
            return
        raise QueryError(
            516,
            f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, or there is no user with such name. "
            f"flywheel's local engine takes the user `default` and the password in {self.password_file}; "
            "`flywheel clickhouse start` and `flywheel clickhouse status` print a URL that carries it. (AUTHENTICATION_FAILED)",
        )

    def handle_query(self, params, sql_body, readonly=False):
        started = time.monotonic()
        self.body_done = sql_body is not None or self.headers.get("Content-Length") in (None, "0") and "chunked" not in self.headers.get("Transfer-Encoding", "").lower()
        try:
            self.authenticate(params)
            self.execute(params, sql_body, readonly)
        except QueryError as err:
            if DEBUG:
                print(f"error: {err}", file=sys.stderr, flush=True)
            self.finish_body()
            self.send_error_response(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # a bug here must not kill the engine
            self.finish_body()
            self.send_error_response(QueryError(1001, f"Code: 1001. DB::Exception: flywheel engine: {type(err).__name__}: {err}"))
        finally:
            elapsed = time.monotonic() - started
            if elapsed > 5:
                print(f"slow request {elapsed:.1f}s", file=sys.stderr, flush=True)

    def finish_body(self):
        """After an error the rest of a request body must not be read as the next request: the
        connection is closed unless the body was consumed to its end."""
        if not self.body_done:
            self.close_connection = True

    def execute(self, params, sql_body, readonly):
        database = params.get("database")
        default_format = params.get("default_format") or "TabSeparated"
        query_params = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if k not in PROTOCOL_PARAMS and not k.startswith("param_")}
        decompress = params.get("decompress") == "1"
        url_query = params.get("query", "")

        insert = INSERT_FORMAT.match(url_query) if url_query else None
        if insert and not insert.group("rest").strip():
            if INSERT_DELAY:
                time.sleep(INSERT_DELAY)
            chunks = self.body_chunks()
            if decompress:
                chunks = decompress_blocks(chunks)
            path = spool(chunks, self.spool_dir)
            try:
                with self.engine.lock:
                    self.engine.prepare(database, settings)
                    rows, size = self.engine.insert_file(insert.group("head"), insert.group("fmt"), path)
            finally:
                remove_quietly(path)
            if DEBUG:
                print(f"insert {insert.group('head')[:60]!r}: {rows} rows, {size} bytes", file=sys.stderr, flush=True)
            self.send_plain(200, b"", {"X-ClickHouse-Summary": json.dumps({"written_rows": str(rows), "written_bytes": str(size)})})
            return

        if sql_body is None:
            raw = b"".join(self.body_chunks())
            if decompress and raw:
                raw = b"".join(decompress_blocks([raw]))
            sql_body = raw
        sql = url_query
        if sql_body:
            sql = (sql + "\n" if sql else "") + sql_body.decode("utf-8", "replace")
        if not sql.strip():
            raise QueryError(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)", 400)

        keyword = first_keyword(sql)
        if readonly and keyword not in ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"):
            raise QueryError(164, "Code: 164. DB::Exception: Cannot execute a modifying query with a GET request: use POST. (READONLY)", 400)
        explicit = TRAILING_FORMAT.search(sql) if keyword in ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN") else None
        fmt = explicit.group(1) if explicit else default_format

        with self.engine.lock:
            self.engine.prepare(database, settings)
            if keyword in ("SELECT", "WITH") and fmt.lower() in STREAMABLE:
                chunks = self.engine.query_stream(sql, fmt, query_params)
                # The lock stays held while streaming: the session may not run two statements.
                self.send_stream(chunks, fmt, {"elapsed_ns": "0"})
            else:
                data = self.engine.query_buffered(sql, fmt, query_params)
                content_type = FORMAT_CONTENT_TYPES.get(fmt.lower(), "application/octet-stream")
                self.send_plain(200, data, {"X-ClickHouse-Format": fmt}, content_type)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def watch_parent(parent):
    """Exit when the process that started us is gone (test runs must not leak engines)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="data directory owned by this engine")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--state-file", help="JSON written once the server accepts connections")
    ap.add_argument("--exit-with-parent", action="store_true")
    ap.add_argument("--password-file", help="file holding the password every query must give (user `default`)")
    args = ap.parse_args()

    if args.password_file:
        with open(args.password_file) as f:
            Handler.password = f.read().strip() or None
        Handler.password_file = args.password_file
    if Handler.password is None and not is_loopback(args.host):
        print(f"refusing to listen on {args.host} without a password: only loopback may go without one (give --password-file)", file=sys.stderr)
        sys.exit(5)

    os.makedirs(args.data, exist_ok=True)
    try:
        engine = Engine(os.path.join(args.data, "chdb"))
    except Exception as exc:
        text = str(exc)
        if "Cannot lock file" in text or "Code: 76" in text:
            print(f"the data directory {args.data} is already used by another engine process", file=sys.stderr)
            sys.exit(3)
        print(f"cannot open the chDB engine at {args.data}: {text}", file=sys.stderr)
        sys.exit(2)
    Handler.engine = engine
    Handler.spool_dir = os.path.join(args.data, "spool")
    # Bodies of inserts cut by a crash of the engine: never committed, never needed again.
    for name in os.listdir(Handler.spool_dir) if os.path.isdir(Handler.spool_dir) else []:
        remove_quietly(os.path.join(Handler.spool_dir, name))
    try:
        server = Server((args.host, args.port), Handler)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        sys.exit(4)
    port = server.server_address[1]

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_with_parent:
        threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    if args.state_file:
        tmp = args.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "host": args.host, "port": port, "url": f"http://{args.host}:{port}", "engine": f"chdb-core {engine.version}"}, f)
        os.replace(tmp, args.state_file)
    print(f"flywheel engine (chdb-core {engine.version}) listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        with engine.lock:
            engine.conn.close()
        if args.state_file:
            try:
                os.remove(args.state_file)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    main()
