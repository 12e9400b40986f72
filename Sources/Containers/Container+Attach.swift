public import ContainerKernel

/// A connection to a running container's stdio, from ``Container/attach()`` (`docker attach`).
public struct ContainerAttachment: Sendable {
    /// What the container writes from the moment of attaching until it exits: stdout and
    /// stderr (or the terminal), entry by entry as the log records them. Empty for a
    /// container whose output is not the log: read ``Container/output()`` instead.
    public var output: AsyncStream<LogEntry>
    /// The container's stdin: a pipe for a container created with
    /// ``ContainerConfiguration/interactive``, the terminal's input with
    /// ``ContainerConfiguration/terminal``; `nil` otherwise. Closing it sends end-of-file.
    public var input: ProcessInput?
}

extension Container {
    /// Connects to the running container's stdio (`docker attach`).
    ///
    /// Any number of attachments may read the output at once; they share the one stdin.
    ///
    /// - Returns: The output from now on and, for an interactive embedded container, its stdin.
    /// - Throws: ``ContainerError/Code/invalidState`` unless running or paused.
    public func attach() throws(ContainerError) -> ContainerAttachment {
        let process = try requireRun("attach to").run.process
        return ContainerAttachment(output: logs(follow: true, tail: 0), input: process.terminal?.input ?? process.standardInput)
    }
}
