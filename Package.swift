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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // System libraries (Debian: libseccomp-dev, libcap-dev, libarchive-dev).
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),

        // The C shim: everything a child runs between clone and execve.
        .target(name: "CContainerKernel", cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror", "-O2"])]),

        .target(
            name: "ContainerKernel",
            dependencies: [
                "CContainerKernel", "CSeccomp", "CCap",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(name: "Layers", dependencies: ["ContainerKernel", "CArchive"], swiftSettings: strict),
        .target(name: "Networking", dependencies: ["ContainerKernel"], swiftSettings: strict),
        .target(name: "Images", dependencies: ["Layers"], swiftSettings: strict),
        .target(
            name: "Containers",
            dependencies: ["ContainerKernel", "Layers", "Networking", "Images"],
            swiftSettings: strict
        ),

        .executableTarget(
            name: "berth",
            dependencies: [
                "Containers", "ContainerKernel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/berth",
            swiftSettings: strict
        ),

        // What every test needs: test root filesystems, the static probe, the leak checker.
        .target(
            name: "TestSupport",
            dependencies: ["ContainerKernel", .product(name: "SystemPackage", package: "swift-system")],
            path: "Tests/TestSupport",
            exclude: ["probe.c"],  // compiled -static at test time, found through #filePath
            swiftSettings: strict
        ),
        .testTarget(
            name: "ContainerKernelTests",
            dependencies: ["ContainerKernel", "TestSupport"]
        ),
    ]
)
