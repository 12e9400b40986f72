import Glibc

/// A signal number, such as `SIGTERM`.
public struct Signal: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The kernel's signal number.
    public var rawValue: Int32

    /// Wraps a signal number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Parses `"SIGTERM"`, `"term"` or `"15"`, as `docker kill --signal` does.
    ///
    /// - Throws: ``KernelError`` with ``KernelError/Code/invalidArgument`` for an unknown name.
    public init(parsing text: String) throws(KernelError) {
        if let number = Int32(text), number > 0, number < 65 {
            self.rawValue = number
            return
        }
        var name = text.uppercased()
        if !name.hasPrefix("SIG") { name = "SIG" + name }
        guard let found = Self.names.first(where: { $0.value == name }) else {
            throw KernelError(code: .invalidArgument, detail: "unknown signal \"\(text)\"")
        }
        self.rawValue = found.key
    }

    public static let hangup = Signal(rawValue: SIGHUP)
    public static let interrupt = Signal(rawValue: SIGINT)
    public static let quit = Signal(rawValue: SIGQUIT)
    public static let kill = Signal(rawValue: SIGKILL)
    public static let user1 = Signal(rawValue: SIGUSR1)
    public static let user2 = Signal(rawValue: SIGUSR2)
    public static let terminate = Signal(rawValue: SIGTERM)
    public static let stop = Signal(rawValue: SIGSTOP)
    public static let `continue` = Signal(rawValue: SIGCONT)
    public static let windowChanged = Signal(rawValue: SIGWINCH)

    private static let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
        SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
        SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        SIGCHLD: "SIGCHLD", SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP", SIGTTIN: "SIGTTIN",
        SIGTTOU: "SIGTTOU", SIGURG: "SIGURG", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGVTALRM: "SIGVTALRM",
        SIGPROF: "SIGPROF", SIGWINCH: "SIGWINCH", SIGIO: "SIGIO", SIGPWR: "SIGPWR", SIGSYS: "SIGSYS",
    ]

    /// `SIGTERM`, or `SIG42` for numbers without a name.
    public var description: String { Self.names[rawValue] ?? "SIG\(rawValue)" }
}

/// How a process ended. A non-zero exit is a result, not an error.
public enum ExitStatus: Sendable, Hashable, CustomStringConvertible {
    /// The process called `exit` with this code.
    case exited(Int32)
    /// A signal ended the process.
    case signaled(Signal, coreDumped: Bool)
    /// The kernel's OOM killer ended the process because its cgroup hit the memory limit.
    case oomKilled
    /// The caller's deadline passed and Berth killed the process (`SIGKILL`): a
    /// `ContainerConfiguration.timeout` or an exec's `timeout`, never a signal the program
    /// sent itself.
    case timedOut

    /// The code a shell (and `docker run`) reports: the exit code, or 128 + the signal number
    /// (137 for an OOM kill), or 124 for a deadline, as `timeout(1)` reports it.
    public var code: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal, _): 128 + signal.rawValue
        case .oomKilled: 128 + SIGKILL
        case .timedOut: 124
        }
    }

    /// Whether the process exited with code 0.
    public var isSuccess: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal, let core): "killed by \(signal)" + (core ? " (core dumped)" : "")
        case .oomKilled: "killed by the OOM killer"
        case .timedOut: "killed at its deadline"
        }
    }
}
