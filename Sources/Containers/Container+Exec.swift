public import ContainerKernel
import Glibc
import SystemSupport

/// The result of a command run in a container with
/// ``Container/exec(_:environment:workingDirectory:user:input:outputLimit:timeout:)``.
public struct ExecResult: Sendable, Hashable {
    /// How the command ended: `ExitStatus.timedOut` when its deadline killed it.
    public var status: ExitStatus
    /// What it wrote to stdout, up to the output limit (invalid UTF-8 replaced).
    public var standardOutput: String
    /// What it wrote to stderr, up to the output limit (invalid UTF-8 replaced).
    public var standardError: String
    /// Whether it wrote more than the output limit, and the rest was dropped.
    public var truncated: Bool
}

extension Container {
    /// Runs a command in the running container and collects its output (`docker exec`).
    ///
    /// The command joins the container's namespaces and cgroup, with the container's
    /// environment (plus `environment`), capabilities and seccomp profile. It waits until the
    /// command has exited and its output has ended (a background process that keeps the
    /// command's stdout open keeps it waiting), suspending the calling task: no thread is
    /// blocked. Memory stays within `outputLimit` whatever the command writes. To stream the
    /// output instead, use ``startExec(_:environment:workingDirectory:user:io:)``.
    ///
    /// Cancelling the calling task kills the command (`SIGKILL`) and waits for its exit, so
    /// nothing of it is left; processes it started in the background stay in the container.
    ///
    /// - Parameters:
    ///   - command: The program and its arguments.
    ///   - environment: Extra `KEY=value` pairs.
    ///   - workingDirectory: Defaults to the container's.
    ///   - user: Defaults to the container's.
    ///   - input: Bytes written to the command's stdin, which is then closed.
    ///   - outputLimit: The most bytes of stdout and stderr together that are kept (1 MiB by
    ///     default); beyond it, output is read and dropped and the result is ``ExecResult/truncated``.
    ///   - timeout: The command's deadline: at it the command is killed (`SIGKILL`) and the
    ///     result's status is `ExitStatus.timedOut`; `nil` for none.
    /// - Returns: The exit status and output; a non-zero exit or a deadline is a result, not an error.
    /// - Throws: ``ContainerError``: ``ContainerError/Code/invalidState`` unless running;
    ///   ``ContainerError/Code/kernel`` when the command cannot start (`exec "nope": executable file not found in $PATH`);
    ///   ``ContainerError/Code/cancelled`` when the calling task was cancelled.
    public func exec(
        _ command: [String], environment: [String] = [], workingDirectory: String? = nil, user: String? = nil,
        input: [UInt8]? = nil, outputLimit: Int = 1 << 20, timeout: Duration? = nil
    ) async throws(ContainerError) -> ExecResult {
        var io = ProcessIO()
        if input != nil { io.standardInput = .pipe }
        let process = try await startExec(command, environment: environment, workingDirectory: workingDirectory,
                                          user: user, io: io)
        let output = Task { await ContainerOutput(of: process).collect(limit: outputLimit) }
        if let input {
            try? await process.standardInput?.write(input)
            await process.standardInput?.close()
        }
        var status: ExitStatus
        var cancelled = false
        do {
            status = try await process.wait(timeout: timeout)
        } catch {
            cancelled = error.code == .cancelled
            try? process.signal(.kill)
            _ = await process.exited()
            status = .timedOut
        }
        let collected = await output.value
        guard !cancelled else { throw ContainerError(code: .cancelled, container: name, detail: "exec \(command.first ?? "") in") }
        return ExecResult(status: status, standardOutput: String(decoding: collected.standardOutput, as: UTF8.self),
                          standardError: String(decoding: collected.standardError, as: UTF8.self),
                          truncated: collected.truncated)
    }

    /// Starts a command in the running container and returns its process, for streaming
    /// stdio or a terminal (`docker exec -it`).
    ///
    /// - Parameters:
    ///   - command: The program and its arguments.
    ///   - environment: Extra `KEY=value` pairs.
    ///   - workingDirectory: Defaults to the container's.
    ///   - user: Defaults to the container's.
    ///   - io: Where its stdio goes (pipes by default, or a terminal).
    /// - Returns: The process; read its output through its `standardOutput` and
    ///   `standardError` (or `terminal`) and wait for it with its `wait(timeout:)`; to stop
    ///   early, signal it and wait again. Read both pipes while waiting: a pipe nobody reads
    ///   fills (64 KiB) and the command blocks on its next write, as with any pipe.
    /// - Throws: ``ContainerError`` as ``exec(_:environment:workingDirectory:user:input:outputLimit:timeout:)``.
    public func startExec(
        _ command: [String], environment: [String] = [], workingDirectory: String? = nil, user: String? = nil,
        io: ProcessIO = ProcessIO()
    ) async throws(ContainerError) -> ProcessHandle {
        let (run, record) = try requireRun("exec in", in: [.running])
        let process = run.process
        var base = try makeProcessSpec(record)
        base.arguments = command
        base.environment += environment
        if let workingDirectory { base.workingDirectory = workingDirectory }
        if let user {
            let identity = try UserIdentity.resolve(user, rootfs: directory + "/rootfs")
            base.userID = identity.uid
            base.groupID = identity.gid
            base.additionalGroups = identity.additionalGroups
        }
        // Everything about the root filesystem and namespaces comes from joining the container.
        base.rootfs = nil
        base.namespaces = []
        base.joinNamespaces = NamespaceJoin.all(Namespaces.container.subtracting(.network).union(
            record.configuration.network == .host ? [] : .network)
            .union(record.configuration.userNamespace == nil ? [] : .user), of: process)
        base.sysctls = [:]  // the container's, set by its start
        base.hostname = nil
        base.cgroup = nil
        base.joinCgroup = run.cgroup
        base.io = io
        let handle: ProcessHandle
        do {
            handle = try await ProcessHandle.spawn(base)
        } catch {
            throw ContainerError(code: .kernel, container: record.name, detail: "exec in", underlying: error)
        }
        runtime.publish(.execStart, self, ["command": command.joined(separator: " ")])
        return handle
    }

    /// The processes running in the container, as `(pid, command line)` (`docker top`).
    ///
    /// - Throws: ``ContainerError/Code/invalidState`` unless running or paused.
    public func top() throws(ContainerError) -> [(pid: Int32, command: String)] {
        let cgroup = try cgroup(of: requireRun("list processes of").run, for: "list processes of")
        let pids = try wrapping("list processes of", container: name) { try cgroup.processes() }
        return pids.sorted().map { pid in
            let raw = (try? readWholeFile("/proc/\(pid)/cmdline", limit: 1 << 20, truncating: true)) ?? []
            let words = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return (pid, words.joined(separator: " "))
        }
    }
}
