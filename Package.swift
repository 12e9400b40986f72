// swift-tools-version:6.1
//
// Berth: an embeddable container SDK for Linux.
//
// Layers, bottom up (each imports only what is below it):
//   CContainerKernel (C shim) -> ContainerKernel -> Layers, Networking -> Images -> Containers
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Berth",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ContainerKernel", targets: ["ContainerKernel"]),
        .library(name: "Layers", targets: ["Layers"]),
        .library(name: "Images", targets: ["Images"]),
        .library(name: "Networking", targets: ["Networking"]),
        .library(name: "Containers", targets: ["Containers"]),
        .executable(name: "berth", targets: ["berth"]),
        .executable(name: "berth-supervisor", targets: ["berth-supervisor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.60.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.20.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.25.0"),
    ],
    targets: [
        // System libraries (Debian: libseccomp-dev, libcap-dev, libarchive-dev).
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),

        // The C shim: everything a child runs between clone and execve.
        .target(name: "CContainerKernel", cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror", "-O2"])]),

        // Holds a detached container's process after its spawner has gone, and is the --init:
        // C only, linked statically (swiftc links every executable, hence -static-executable;
        // swiftrt.c keeps the Swift runtime out) so that it runs in any image and costs under
        // 1 MiB per container (Sources/berth-supervisor).
        .executableTarget(
            name: "berth-supervisor",
            cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror", "-O2"])],
            linkerSettings: [.unsafeFlags(["-static-executable"])]
        ),

        .target(
            name: "ContainerKernel",
            dependencies: [
                "CContainerKernel", "CSeccomp", "CCap",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Layers",
            dependencies: [
                "ContainerKernel", "CArchive",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Networking",
            dependencies: [
                "ContainerKernel",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Images",
            dependencies: [
                "Layers",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Containers",
            dependencies: ["ContainerKernel", "Layers", "Networking", "Images"],
            swiftSettings: strict
        ),

        .executableTarget(
            name: "berth",
            dependencies: [
                "Containers", "ContainerKernel", "Images", "Layers", "Networking",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Examples/berth",
            swiftSettings: strict
        ),

        // Start-to-exit through the library, in-process and warm (scripts/bench runs it).
        .executableTarget(
            name: "berth-bench-start",
            dependencies: ["ContainerKernel"],
            path: "Benchmarks/berth-bench-start",
            swiftSettings: strict
        ),

        // The container lifecycle through the public API: run to exit, remove, exec
        // (scripts/bench runs it).
        .executableTarget(
            name: "berth-bench-lifecycle",
            dependencies: ["Containers"],
            path: "Benchmarks/berth-bench-lifecycle",
            swiftSettings: strict
        ),

        // What every test needs: test root filesystems, the static probe, the leak checker.
        .target(
            name: "TestSupport",
            dependencies: [
                "ContainerKernel",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/TestSupport",
            exclude: ["probe.c"],  // compiled -static at test time, found through #filePath
            swiftSettings: strict
        ),
        // Test targets take no strict settings: Swift Testing's macros do not build with them.
        .testTarget(name: "ContainerKernelTests", dependencies: ["ContainerKernel", "TestSupport"]),
        .testTarget(name: "LayersTests", dependencies: ["Layers", "TestSupport"]),
        .testTarget(name: "ImagesTests", dependencies: ["Images", "Layers", "TestSupport"]),
        .testTarget(name: "NetworkingTests", dependencies: ["Networking", "ContainerKernel", "TestSupport"]),
        .testTarget(name: "ContainersTests", dependencies: ["Containers", "Images", "ContainerKernel", "TestSupport"]),
    ]
)
