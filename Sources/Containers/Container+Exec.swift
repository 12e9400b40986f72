public import ContainerKernel
import Glibc
import SystemSupport

/// The result of a command run in a container with ``Container/exec(_:environment:workingDirectory:user:input:)``.
public struct ExecResult: Sendable, Hashable {
    /// How the command ended.
    public var status: ExitStatus
    /// What it wrote to stdout.
    public var standardOutput: String
    /// What it wrote to stderr.
    public var standardError: String
}

extension Container {
    /// Runs a command in the running container and collects its output (`docker exec`).
    ///
    /// The command joins the container's namespaces and cgroup, with the container's
    /// environment (plus `environment`), capabilities and seccomp profile.
    ///
    /// - Parameters:
    ///   - command: The program and its arguments.
    ///   - environment: Extra `KEY=value` pairs.
    ///   - workingDirectory: Defaults to the container's.
    ///   - user: Defaults to the container's.
    ///   - input: Bytes written to the command's stdin, which is then closed.
    /// - Returns: The exit status and output; a non-zero exit is a result, not an error.
    /// - Throws: ``ContainerError``: ``ContainerError/Code/invalidState`` unless running;
    ///   ``ContainerError/Code/kernel`` when the command cannot start (`exec "nope": executable file not found in $PATH`).
    public func exec(
        _ command: [String], environment: [String] = [], workingDirectory: String? = nil, user: String? = nil,
        input: [UInt8]? = nil
    ) async throws(ContainerError) -> ExecResult {
        var io = ProcessIO()
        if input != nil { io.standardInput = .pipe }
        let process = try await startExec(command, environment: environment, workingDirectory: workingDirectory,
                                          user: user, io: io)
        if let input {
            try? await process.standardInput?.write(input)
            await process.standardInput?.close()
        }
        async let out = process.standardOutput?.collectString() ?? ""
        async let err = process.standardError?.collectString() ?? ""
        let status = await process.wait()
        return ExecResult(status: status, standardOutput: await out, standardError: await err)
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
    /// - Returns: The process; wait for it with its `wait()`.
    /// - Throws: ``ContainerError`` as ``exec(_:environment:workingDirectory:user:input:)``.
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
