import Glibc
import SystemSupport

// The chown'ed copy of a root filesystem for a container in a user namespace: the image's
// files belong to host ids 0…65535, which the namespace does not map (the container would see
// them as nobody's, and its root could not write them); each gets the host id its owner maps
// to. On overlay a chown copies the file up, so the result is a copy of the image's files in
// the container's upper directory, the lower layers stay shared and untouched.
//
// An idmapped mount (mount_setattr MOUNT_ATTR_IDMAP) would give the same view without the copy,
// but overlayfs, the snapshot driver, cannot be idmapped itself: that needs each lower layer
// idmapped before the overlay mount, not done yet.

extension UserNamespaceRemapping {
    /// Gives every file of the tree at `root` (the root included) the host owner that its
    /// owner maps to; ids the range does not cover stay as they are (nobody's inside).
    ///
    /// Idempotent: ``ContainerConfiguration/validate()`` keeps the host range apart from the
    /// container's ids, so an owner already mapped is never mapped again (a hard link reached a
    /// second time, or a retried create). `chown` clears set-user-id and set-group-id bits,
    /// which are set again; file capabilities (`security.capability`) are lost. The tree is
    /// one the runtime made and no process runs in yet: it is walked by descriptor, never
    /// through a symlink. Runs on the blocking pool.
    ///
    /// - Parameter root: The directory, such as a new container's `rootfs`.
    /// - Throws: ``ContainerError/Code/io`` naming the file that could not be changed.
    func shiftOwners(of root: String) async throws(ContainerError) {
        try await BlockingPool.shared.run { [self] () throws(ContainerError) in
            let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw failure("open", root) }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw failure("stat", root) }
            try shiftTree(fd, path: root)
            if let (uid, gid) = mappedOwner(st) {
                guard fchown(fd, uid, gid) == 0 else { throw failure("change the owner of", root) }
            }
        }
    }

    /// The host owner for a file owned by `st`'s ids (`UInt32.max`, `(uid_t)-1`, where an id
    /// stays), or `nil` when neither id is one the range maps.
    private func mappedOwner(_ st: stat) -> (uid: UInt32, gid: UInt32)? {
        let uid = st.st_uid < size ? hostID + st.st_uid : UInt32.max
        let gid = st.st_gid < size ? hostID + st.st_gid : UInt32.max
        return uid == UInt32.max && gid == UInt32.max ? nil : (uid, gid)
    }

    /// Shifts the entries of the directory open as `directory`, depth first.
    private func shiftTree(_ directory: Int32, path: String) throws(ContainerError) {
        let listing = dup(directory)
        guard listing >= 0, let stream = fdopendir(listing) else {
            if listing >= 0 { close(listing) }
            throw failure("list", path)
        }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != ".", name != ".." else { continue }
            let entryPath = path + "/" + name
            var st = stat()
            guard fstatat(directory, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw failure("stat", entryPath) }
            if st.st_mode & S_IFMT == S_IFDIR {
                let child = openat(directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw failure("open", entryPath) }
                defer { close(child) }
                try shiftTree(child, path: entryPath)
            }
            try shift(name, in: directory, st, path: entryPath)
        }
    }

    /// Changes the owner of `name` in `parent`, whose status was `st`, restoring the mode bits
    /// `chown` clears.
    private func shift(_ name: String, in parent: Int32, _ st: stat, path: String) throws(ContainerError) {
        guard let (uid, gid) = mappedOwner(st) else { return }
        guard fchownat(parent, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 else { throw failure("change the owner of", path) }
        let kind = st.st_mode & S_IFMT
        if kind != S_IFLNK && kind != S_IFDIR && st.st_mode & (S_ISUID | S_ISGID) != 0 {
            guard fchmodat(parent, name, st.st_mode & 0o7777, 0) == 0 else { throw failure("restore the mode of", path) }
        }
    }

    private func failure(_ operation: String, _ path: String) -> ContainerError {
        ContainerError(code: .io, detail: "\(operation) \(path) for the user namespace: \(String(cString: strerror(errno)))")
    }
}
