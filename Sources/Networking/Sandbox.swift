public import ContainerKernel

/// A container's network: the namespace to join, its endpoints, and the files to mount at
/// `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
///
/// It exists from ``NetworkManager/prepareSandbox(containerID:hostname:mode:aliases:)`` until
/// ``NetworkManager/releaseSandbox(containerID:)``, across container restarts, so a container
/// keeps its addresses when it restarts.
public struct Sandbox: Codable, Sendable, Hashable {
    /// The container.
    public var containerID: String
    /// The container's hostname.
    public var hostname: String
    /// The network namespace file the container joins; `nil` for the host's namespace.
    public var netnsPath: String?
    /// Whether Berth created the namespace (and removes it on release), rather than joining
    /// another container's or the host's.
    public var ownsNamespace: Bool
    /// The networks the container is attached to, the default route's first.
    public var endpoints: [Endpoint]
    /// The hosts file to mount at `/etc/hosts`; rewritten in place as peers come and go.
    public var hostsPath: String
    /// The file to mount at `/etc/resolv.conf`.
    public var resolvConfPath: String
    /// The file to mount at `/etc/hostname`.
    public var hostnamePath: String

    /// Adjusts a process spec to run in this sandbox: joins the network namespace (or stays in
    /// the host's), sets the hostname, and bind-mounts the hosts, resolv.conf and hostname files.
    ///
    /// The hosts file is mounted read-write as Docker does, and Berth rewrites it in place (a
    /// bind mount pins the file's inode, so an atomic rename would never be seen).
    ///
    /// - Parameter spec: The spec to change.
    public func configure(_ spec: inout ProcessSpec) {
        spec.namespaces.remove(.network)
        spec.joinNamespaces.removeAll { $0.kind == .network }
        if let netnsPath { spec.joinNamespaces.append(NamespaceJoin(.network, path: netnsPath)) }
        spec.hostname = hostname
        guard spec.rootfs != nil else { return }
        spec.mounts += [
            .bind(hostsPath, to: "/etc/hosts", recursive: false),
            .bind(resolvConfPath, to: "/etc/resolv.conf", readOnly: true, recursive: false),
            .bind(hostnamePath, to: "/etc/hostname", readOnly: true, recursive: false),
        ]
    }
}
