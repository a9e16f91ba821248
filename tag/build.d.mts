// Types of build.mjs for the tests.
export declare const PLACEHOLDER: string;
export declare const DIST: string;
export declare const DIST_EXT: string;
export declare function buildTag(): Promise<string>;
export declare function buildExt(): Promise<string>;
