#!/usr/bin/env node
// The operator bundle's budget: the gzip size of every JS and CSS file of the build except the
// basemap data (an upper bound: it includes the admin screens, which operators never load). The
// initial download (what dist/index.html loads up front: its scripts, stylesheets and
// modulepreloads and their static imports, recursively) is listed file by file for reference.
//
//   node scripts/check-bundle.mjs [--dist DIR] [--budget KB] [--exclude REGEX]
//
// Prints one line per file and the total; exits 1 above the budget (kB = 1000 bytes).
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

const BASE = '/monitor/'
const DEFAULTS = { dist: 'dist', budget: 250, exclude: 'basemap' }

// `import x from "./a.js"`, `import "./a.js"`, `export { x } from "./a.js"` — never `import("./a.js")`.
const STATIC_IMPORT = /(?:^|[;\s}])(?:import|export)\s*(?:[\w$*{}\s,]*?from\s*)?["']([^"'()\s]+\.(?:m?js|css))["']/g
const HTML_REF = /<(script|link)\b[^>]*?>/gi

function attr(tag, name) {
  const m = tag.match(new RegExp(`\\b${name}\\s*=\\s*("([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i'))
  return m ? (m[2] ?? m[3] ?? m[4]) : undefined
}

/** Files (relative to dist) that index.html loads up front. */
export function entryFiles(html) {
  const files = []
  for (const [tag, kind] of html.matchAll(HTML_REF)) {
    let ref
    if (kind.toLowerCase() === 'script') {
      ref = attr(tag, 'src')
    } else {
      const rel = (attr(tag, 'rel') ?? '').toLowerCase().split(/\s+/)
      if (rel.includes('stylesheet') || rel.includes('modulepreload')) ref = attr(tag, 'href')
    }
    if (!ref || /^(?:[a-z]+:)?\/\//i.test(ref) || ref.startsWith('data:')) continue
    ref = ref.split(/[?#]/)[0]
    files.push(ref.startsWith(BASE) ? ref.slice(BASE.length) : ref.replace(/^\.?\//, ''))
  }
  return files
}

/** Static imports of one JS module, as paths relative to dist. */
export function staticImports(code, file) {
  const found = []
  for (const [, spec] of code.matchAll(STATIC_IMPORT)) {
    let target
    if (spec.startsWith(BASE)) target = spec.slice(BASE.length)
    else if (spec.startsWith('./') || spec.startsWith('../')) target = normalize(join(dirname(file), spec))
    else continue // bare or absolute foreign specifiers are not files of this build
    found.push(target.split('\\').join('/'))
  }
  return found
}

/** The initial download: [{file, bytes, gzip, excluded}] for every file reached from index.html. */
export function measure(dist, exclude = new RegExp(DEFAULTS.exclude)) {
  const index = join(dist, 'index.html')
  if (!existsSync(index)) throw new Error(`${index} does not exist: run \`npm run build\` first`)
  const queue = entryFiles(readFileSync(index, 'utf8'))
  if (!queue.some((f) => /\.m?js$/.test(f))) throw new Error(`${index} loads no JavaScript: is it a Vite build?`)
  const seen = new Set()
  const files = []
  while (queue.length) {
    const file = queue.shift()
    if (seen.has(file)) continue
    seen.add(file)
    const path = join(dist, file)
    if (!existsSync(path)) throw new Error(`${file} is referenced but missing from ${dist}`)
    const body = readFileSync(path)
    files.push({ file, bytes: body.length, gzip: gzipSync(body, { level: 9 }).length, excluded: exclude.test(file) })
    if (/\.m?js$/.test(file)) queue.push(...staticImports(body.toString('utf8'), file))
  }
  return files
}

/** gzip bytes of every JS and CSS file of the build that `exclude` does not match (lazy chunks too). */
export function wholeBuild(dist, exclude = new RegExp(DEFAULTS.exclude)) {
  let total = 0
  for (const entry of readdirSync(dist, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.(m?js|css)$/.test(entry.name)) continue
    const file = relative(dist, join(entry.parentPath ?? entry.path, entry.name)).split('\\').join('/')
    if (!exclude.test(file)) total += gzipSync(readFileSync(join(dist, file)), { level: 9 }).length
  }
  return total
}

function parseArgs(argv) {
  const opts = { ...DEFAULTS }
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '')
    if (!(key in opts) || i + 1 >= argv.length) throw new Error(`usage: check-bundle.mjs [--dist DIR] [--budget KB] [--exclude REGEX]`)
    opts[key] = argv[++i]
  }
  return { dist: resolve(opts.dist), budget: Number(opts.budget), exclude: new RegExp(opts.exclude) }
}

function main() {
  const { dist, budget, exclude } = parseArgs(process.argv.slice(2))
  const files = measure(dist, exclude)
  const kb = (n) => (n / 1000).toFixed(1).padStart(7)
  let total = 0
  for (const f of files) {
    if (!f.excluded) total += f.gzip
    console.log(`${kb(f.gzip)} kB gzip ${kb(f.bytes)} kB raw  ${f.file}${f.excluded ? '  (map data: not counted)' : ''}`)
  }
  // The map (Leaflet) is a lazy chunk that every operator loads at once, so the initial download
  // alone understates what an operator waits for. The budget holds the whole build instead:
  // every JS and CSS chunk, admin screens included (operators never load them), map data not.
  const whole = wholeBuild(dist, exclude)
  console.log(`initial download: ${(total / 1000).toFixed(1)} kB gzip (JS + CSS index.html loads up front)`)
  const verdict = whole <= budget * 1000 ? 'within' : 'OVER'
  console.log(
    `operator bundle: ${(whole / 1000).toFixed(1)} kB gzip (${whole} bytes; every JS + CSS chunk, lazy and admin ones included, map data excluded); budget ${budget} kB: ${verdict}`,
  )
  if (verdict !== 'within') process.exit(1)
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main()
  } catch (err) {
    console.error(`check-bundle: ${err.message}`)
    process.exit(1)
  }
}
