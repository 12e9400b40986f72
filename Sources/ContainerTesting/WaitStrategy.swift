import Containers

/// When a fixture's container counts as ready, checked until a deadline.
///
/// Every check looks at the container itself, never at something in front of it: a
/// listening port is read from the LISTEN sockets of the container's own network namespace,
/// so a published port's forwarder on the host, which accepts connections before the
/// service does, cannot make a fixture ready early. A check that can never pass any more
/// (the container exited) fails at once instead of at the deadline.
///
/// ```swift
/// let strategy: WaitStrategy = .allOf([
///     .logLine(matching: "ready to accept connections"),
///     .listeningPort(5432),
/// ])
/// ```
///
/// The deadline is the fixture's ``Fixture/startupTimeout``; ``timeout(_:)`` gives one
/// strategy a shorter one.
public struct WaitStrategy: Sendable, CustomStringConvertible {
    indirect enum Check: Sendable {
        case running
        case logLine(pattern: String, times: Int)
        case listeningPort(UInt16)
        case http(path: String, port: UInt16, status: Int, body: (@Sendable (String) -> Bool)?)
        case exec([String], exitCode: Int32)
        case fileExists(String)
        case exit(code: Int32)
        case allOf([WaitStrategy])
        case anyOf([WaitStrategy])
    }

    let check: Check
    let timeout: Duration?

    /// Ready as soon as the container's process runs.
    public static var running: WaitStrategy { WaitStrategy(check: .running, timeout: nil) }

    /// Ready when `times` lines of the container's log (stdout and stderr) match a regular
    /// expression. After ``RunningFixture/restore(_:)`` only the lines of the new run count.
    ///
    /// - Parameters:
    ///   - pattern: A regular expression in Swift's `Regex` syntax, found anywhere in a line.
    ///   - times: How many lines must match.
    /// - Returns: The strategy.
    public static func logLine(matching pattern: String, times: Int = 1) -> WaitStrategy {
        WaitStrategy(check: .logLine(pattern: pattern, times: times), timeout: nil)
    }

    /// Ready when a TCP socket listens on `port` inside the container's network namespace
    /// (IPv4 or IPv6, any address), read from `/proc/<pid>/net/tcp` and `tcp6` of its process;
    /// when the port is published, also its host port (which Berth's forwarder opens only once
    /// the container listens), so that a client connects at once.
    ///
    /// - Parameter port: The port inside the container.
    /// - Returns: The strategy.
    public static func listeningPort(_ port: UInt16) -> WaitStrategy {
        WaitStrategy(check: .listeningPort(port), timeout: nil)
    }

    /// Ready when an HTTP `GET` of `path` on a container port answers `status` (and, given
    /// `body`, a body it accepts).
    ///
    /// The request goes to the container's address on its bridge network, or, on a network
    /// of its own, to the host port the container port is published at. Plain HTTP. A
    /// published port is also awaited on the host, as ``listeningPort(_:)`` does.
    ///
    /// - Parameters:
    ///   - path: The path, with its query (`/health`).
    ///   - port: The port inside the container.
    ///   - status: The status code awaited.
    ///   - body: Whether the body (as UTF-8 text) is the one awaited; `nil` accepts any.
    /// - Returns: The strategy.
    public static func http(_ path: String = "/", port: UInt16, status: Int = 200,
                            body: (@Sendable (String) -> Bool)? = nil) -> WaitStrategy {
        WaitStrategy(check: .http(path: path, port: port, status: status, body: body), timeout: nil)
    }

    /// Ready when a command run in the container exits with `exitCode`.
    ///
    /// - Parameters:
    ///   - command: The program and its arguments, run as `Container.exec` runs them.
    ///   - exitCode: The exit code awaited.
    /// - Returns: The strategy.
    public static func exec(_ command: [String], exitCode: Int32 = 0) -> WaitStrategy {
        WaitStrategy(check: .exec(command, exitCode: exitCode), timeout: nil)
    }

    /// Ready when a path exists in the container's filesystem, as its processes see it
    /// (resolved inside its root: a symlink cannot lead the check out of it). A symlink as
    /// the last component counts as existing, even when its target does not.
    ///
    /// - Parameter path: The absolute path in the container.
    /// - Returns: The strategy.
    public static func fileExists(_ path: String) -> WaitStrategy {
        WaitStrategy(check: .fileExists(path), timeout: nil)
    }

    /// Ready when the container's process has exited with `code`: a one-shot job (a schema
    /// migration, a seed). Exiting with another code can never be ready.
    ///
    /// - Parameter code: The exit code awaited.
    /// - Returns: The strategy.
    public static func exit(code: Int32 = 0) -> WaitStrategy {
        WaitStrategy(check: .exit(code: code), timeout: nil)
    }

    /// Ready when every strategy is, checked one after another.
    ///
    /// - Parameter strategies: The strategies.
    /// - Returns: The strategy.
    public static func allOf(_ strategies: [WaitStrategy]) -> WaitStrategy {
        WaitStrategy(check: .allOf(strategies), timeout: nil)
    }

    /// Ready when one of the strategies is, checked at the same time.
    ///
    /// - Parameter strategies: The strategies.
    /// - Returns: The strategy.
    public static func anyOf(_ strategies: [WaitStrategy]) -> WaitStrategy {
        WaitStrategy(check: .anyOf(strategies), timeout: nil)
    }

    /// This strategy with a deadline of its own, `timeout` after it starts checking; the
    /// fixture's ``Fixture/startupTimeout`` still bounds it.
    ///
    /// - Parameter timeout: How long this strategy may take.
    /// - Returns: The strategy.
    public func timeout(_ timeout: Duration) -> WaitStrategy {
        WaitStrategy(check: check, timeout: timeout)
    }

    /// What the strategy waits for (`TCP port 8080 listening inside the container`).
    public var description: String {
        let text = switch check {
        case .running: "the process to run"
        case .logLine(let pattern, let times): times == 1 ? "a log line matching /\(pattern)/" : "\(times) log lines matching /\(pattern)/"
        case .listeningPort(let port): "TCP port \(port) listening inside the container"
        case .http(let path, let port, let status, let body): "HTTP GET \(path) on port \(port) answering \(status)\(body == nil ? "" : " with the body awaited")"
        case .exec(let command, let exitCode): "`\(command.joined(separator: " "))` to exit with \(exitCode)"
        case .fileExists(let path): "\(path) to exist"
        case .exit(let code): "the process to exit with \(code)"
        case .allOf(let strategies): "all of (\(strategies.map(\.description).joined(separator: "; ")))"
        case .anyOf(let strategies): "any of (\(strategies.map(\.description).joined(separator: "; ")))"
        }
        return timeout.map { "\(text) within \($0)" } ?? text
    }
}
