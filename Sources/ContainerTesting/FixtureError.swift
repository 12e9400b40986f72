public import Containers
import FoundationEssentials

/// Why a fixture is not ready, or cannot be used as asked, with what a red CI run needs to say
/// why: the container's state and its last log lines.
public struct FixtureError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        /// The wait strategy's deadline passed before the container was ready.
        public static var timedOut: Code { Code(name: "timedOut") }
        /// The container can never become ready: it exited, or exited with another code than
        /// the one awaited, or the check cannot be made (an invalid pattern, no way to reach a port).
        public static var neverReady: Code { Code(name: "neverReady") }
        /// ``RunningFixture/mappedPort(_:transport:)`` was asked for a port that is not published.
        public static var notPublished: Code { Code(name: "notPublished") }
        /// ``RunningFixture/scoped(_:)`` was asked for a fixture no ``FixtureTrait`` around the
        /// test provides.
        public static var notInScope: Code { Code(name: "notInScope") }
        /// ``RunningFixture/restore(_:)`` was given a snapshot of another fixture.
        public static var foreignSnapshot: Code { Code(name: "foreignSnapshot") }
        /// The name of the code.
        public var description: String { name }
    }

    /// What went wrong.
    public var code: Code
    /// The container's name, when there is a container.
    public var container: String?
    /// The wait strategy that was not met, as ``WaitStrategy/description`` says it.
    public var waitingFor: String?
    /// What the last check saw (`no socket listens on port 8080`), or what was asked.
    public var detail: String
    /// The container's state when the error was made.
    public var state: ContainerState?
    /// The container's last log lines, oldest first (at most 20).
    public var lastLogLines: [String]

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: What went wrong.
    ///   - container: The container's name.
    ///   - waitingFor: The strategy not met.
    ///   - detail: What the last check saw, or what was asked.
    ///   - state: The container's state.
    ///   - lastLogLines: Its last log lines.
    public init(code: Code, container: String? = nil, waitingFor: String? = nil, detail: String,
                state: ContainerState? = nil, lastLogLines: [String] = []) {
        self.code = code
        self.container = container
        self.waitingFor = waitingFor
        self.detail = detail
        self.state = state
        self.lastLogLines = lastLogLines
    }

    /// The error in one paragraph: the container, the strategy, the last check, the state and
    /// the log lines, each line of the log indented under the rest.
    public var description: String {
        var text = "fixture"
        if let container { text += " \(container)" }
        switch code {
        case .timedOut: text += ": not ready in time"
        case .neverReady: text += ": can never be ready"
        default: text += ": \(code)"
        }
        if let waitingFor { text += ", waiting for \(waitingFor)" }
        text += ": \(detail)"
        if let state {
            text += "; state \(state.status)"
            if let pid = state.pid, state.status == .running { text += " (pid \(pid))" }
            if state.status == .exited, let exitCode = state.exitCode { text += " (exit code \(exitCode))" }
            if let error = state.error { text += " (\(error))" }
        }
        if state != nil {
            text += lastLogLines.isEmpty ? "; no log lines" : "; last log lines:" + lastLogLines.map { "\n  | \($0)" }.joined()
        }
        return text
    }

    /// An error about `container`, with its state and last log lines.
    static func about(_ container: Container, _ code: Code, waitingFor: WaitStrategy, detail: String) async -> FixtureError {
        let text = await collectLogs(container, tail: 20)
        return FixtureError(code: code, container: container.name, waitingFor: waitingFor.description, detail: detail,
                            state: container.state, lastLogLines: Array(lines(of: text).suffix(20)))
    }
}

/// The text of the container's log (stdout and stderr, in the order written); `since` limits
/// it to the entries written at or after a time, `tail` to the last entries.
func collectLogs(_ container: Container, since: Date? = nil, tail: Int? = nil) async -> String {
    var text = ""
    for await entry in container.logs(since: since, tail: tail) { text += entry.log }
    return text
}

/// The lines of `text`, without a last empty line.
func lines(of text: String) -> [String] {
    let all = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    return Array(all.dropLast(text.isEmpty || text.hasSuffix("\n") ? 1 : 0))
}
