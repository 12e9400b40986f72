// A real distribution registry (Debian's `docker-registry`) on 127.0.0.1, configured per test:
// plain HTTP, TLS with a CA the test generates, htpasswd basic auth or token auth.

import Foundation
import Glibc

/// A `docker-registry` process listening on a free loopback port, stopped with ``stop()``.
public final class RegistryServer: @unchecked Sendable {
    /// How clients authenticate.
    public enum Auth: Sendable {
        /// Anonymous access.
        case none
        /// htpasswd (bcrypt) basic auth with one user.
        case basic(username: String, password: String)
        /// Bearer tokens from `realm`, signed by the key whose certificate is at `rootCertificate`.
        case token(realm: String, service: String, issuer: String, rootCertificate: String)
    }

    /// `127.0.0.1:<port>`, the registry part of references.
    public let host: String
    /// The directory holding config, storage and certificates; removed by ``stop()``.
    public let directory: TemporaryDirectory
    /// The CA certificate (PEM) clients must trust, when the registry serves TLS.
    public let caCertificate: String?
    private var pid: pid_t

    /// Starts a registry and waits until it accepts connections.
    ///
    /// - Parameters:
    ///   - tls: Serve HTTPS with a certificate for 127.0.0.1 signed by a fresh CA.
    ///   - auth: How clients authenticate.
    /// - Throws: ``TestSupportError`` if it cannot be configured or does not come up.
    public init(tls: Bool = false, auth: Auth = .none) throws {
        directory = try TemporaryDirectory(prefix: "registry")
        let port = try freeLoopbackPort()
        host = "127.0.0.1:\(port)"
        var yaml = """
            version: 0.1
            log:
              level: error
            storage:
              filesystem:
                rootdirectory: \(directory.path)/data
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:\(port)

            """
        if tls {
            let (ca, cert, key) = try Self.makeCertificates(in: directory.path)
            caCertificate = ca
            yaml += "  tls:\n    certificate: \(cert)\n    key: \(key)\n"
        } else {
            caCertificate = nil
        }
        switch auth {
        case .none: break
        case .basic(let username, let password):
            let (status, output) = try runProgram(["htpasswd", "-Bbn", username, password])
            guard status == 0 else { throw TestSupportError("htpasswd: \(output)") }
            try Data(output.utf8).write(to: URL(fileURLWithPath: directory.path + "/htpasswd"))
            yaml += "auth:\n  htpasswd:\n    realm: berth-test\n    path: \(directory.path)/htpasswd\n"
        case .token(let realm, let service, let issuer, let rootCertificate):
            yaml += """
                auth:
                  token:
                    realm: \(realm)
                    service: \(service)
                    issuer: \(issuer)
                    rootcertbundle: \(rootCertificate)

                """
        }
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: directory.path + "/config.yml"))
        pid = try spawnBackground(["/usr/bin/docker-registry", "serve", directory.path + "/config.yml"], log: directory.path + "/registry.log")
        try waitForPort(port, process: pid, log: directory.path + "/registry.log")
    }

    /// Stops the registry (SIGTERM, then SIGKILL), reaps it and deletes its directory.
    public func stop() throws {
        stopProcess(pid)
        pid = 0
        try directory.remove()
    }

    deinit {
        if pid > 0 { stopProcess(pid) }
    }

    /// A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI.
    private static func makeCertificates(in dir: String) throws -> (ca: String, cert: String, key: String) {
        let commands: [[String]] = [
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
             "-subj", "/CN=berth test ca", "-keyout", "\(dir)/ca.key", "-out", "\(dir)/ca.pem"],
            ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "\(dir)/server.key", "-out", "\(dir)/server.csr"],
            ["sh", "-c", "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > \(dir)/san.ext"],
            ["openssl", "x509", "-req", "-in", "\(dir)/server.csr", "-CA", "\(dir)/ca.pem", "-CAkey", "\(dir)/ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "\(dir)/san.ext", "-out", "\(dir)/server.pem"],
        ]
        for command in commands {
            let (status, output) = try runProgram(command)
            guard status == 0 else { throw TestSupportError("\(command.joined(separator: " ")): \(output)") }
        }
        return ("\(dir)/ca.pem", "\(dir)/server.pem", "\(dir)/server.key")
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
public func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError.errno("socket") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw TestSupportError.errno("bind 127.0.0.1:0") }
    return UInt16(bigEndian: address.sin_port)
}

/// Starts a long-running program with stdout and stderr going to `log`.
func spawnBackground(_ argv: [String], log: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let cArgs = argv.map { strdup($0) }
    defer { cArgs.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs + [nil], environ)
    guard rc == 0 else { throw TestSupportError.errno("spawn \(argv[0])", rc) }
    return pid
}

/// Waits until something listens on 127.0.0.1:`port`, failing early if `process` exits.
func waitForPort(_ port: UInt16, process: pid_t, log: String, timeout: Duration = .seconds(15)) throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        var status: Int32 = 0
        if waitpid(process, &status, WNOHANG) == process {
            throw TestSupportError("process exited before listening on \(port): \(readTextFile(log) ?? "")")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        close(fd)
        if connected { return }
        usleep(50_000)
    }
    throw TestSupportError("nothing listens on 127.0.0.1:\(port) after \(timeout): \(readTextFile(log) ?? "")")
}

/// SIGTERM, up to 5 s for it to exit, then SIGKILL; always reaps.
func stopProcess(_ pid: pid_t) {
    guard pid > 0 else { return }
    kill(pid, SIGTERM)
    var status: Int32 = 0
    for _ in 0..<100 {
        if waitpid(pid, &status, WNOHANG) == pid { return }
        usleep(50_000)
    }
    kill(pid, SIGKILL)
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
}
