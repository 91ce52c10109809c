// validate.js — "is this text valid JSON / YAML / HCL?" before a KV value is saved. JSON uses
// the browser's parser; YAML and HCL get small structural checks (indentation with tabs,
// unclosed quotes and brackets, lines that are neither an entry nor a block), which catch the
// typical hand-edit mistakes without a parser dependency. Returns null or {line, message}.

/** The language a key's name suggests: json, yaml, hcl, or '' (plain text). */
export function languageOf(key, text) {
  const ext = /\.([A-Za-z]+)$/.exec(key)?.[1]?.toLowerCase();
  if (ext === 'json') return 'json';
  if (ext === 'yaml' || ext === 'yml') return 'yaml';
  if (ext === 'hcl' || ext === 'tf' || ext === 'nomad') return 'hcl';
  if (!ext && /^\s*[{[]/.test(text) && /[}\]]\s*$/.test(text)) return 'json';
  return '';
}

export function validate(language, text) {
  if (language === 'json') return validateJson(text);
  if (language === 'yaml') return validateYaml(text);
  if (language === 'hcl') return validateHcl(text);
  return null;
}

function lineAt(text, position) {
  return text.slice(0, position).split('\n').length;
}

function validateJson(text) {
  try {
    JSON.parse(text);
    return null;
  } catch (err) {
    const pos = /position (\d+)/.exec(err.message);
    const line = /line (\d+)/.exec(err.message);
    return { line: line ? Number(line[1]) : pos ? lineAt(text, Number(pos[1])) : null, message: err.message };
  }
}

/** Brackets and quotes across `text`, skipping comments that start with one of `comments`. */
function balance(text, comments) {
  const stack = [];
  const pairs = { '}': '{', ']': '[', ')': '(' };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    let quote = null;
    for (let j = 0; j < line.length; j += 1) {
      const c = line[j];
      if (quote) {
        if (c === '\\' && quote === '"') j += 1;
        else if (c === quote) quote = null;
        continue;
      }
      if (comments.some((p) => line.startsWith(p, j) && (p === '//' || j === 0 || /\s/.test(line[j - 1])))) break;
      if (c === '"' || (c === "'" && comments.includes('#') && (j === 0 || /[\s:\-[{,]/.test(line[j - 1])))) quote = c;
      else if ('{[('.includes(c)) stack.push({ c, line: i + 1 });
      else if (pairs[c]) {
        const open = stack.pop();
        if (!open || open.c !== pairs[c]) return { line: i + 1, message: `unexpected “${c}”` };
      }
    }
    if (quote) return { line: i + 1, message: `unclosed ${quote === '"' ? 'double' : 'single'} quote` };
  }
  const open = stack.pop();
  return open ? { line: open.line, message: `“${open.c}” is never closed` } : null;
}

function validateYaml(text) {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    if (/^ *\t/.test(lines[i])) return { line: i + 1, message: 'tabs are not allowed in YAML indentation' };
  }
  const unbalanced = balance(text, ['#']);
  if (unbalanced) return unbalanced;
  // At an indentation where mapping entries ("key: value") live, a bare word is an error.
  const mappingAt = new Map(); // indent -> true when a "key:" line was seen there
  let blockIndent = -1; // inside a "|" or ">" block scalar: lines indented deeper are text
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    if (!line.trim() || /^\s*#/.test(line) || /^(---|\.\.\.)\s*$/.test(line)) continue;
    const indent = line.length - line.trimStart().length;
    if (blockIndent >= 0 && indent > blockIndent) continue;
    blockIndent = -1;
    for (const k of [...mappingAt.keys()]) if (k > indent) mappingAt.delete(k);
    const body = line.trim().replace(/^- +/, '');
    const isEntry = /^[^#'"{[][^#]*?:(\s|$)/.test(body) || /^(["']).*\1\s*:(\s|$)/.test(body);
    const isItem = /^-( |$)/.test(line.trim());
    if (isEntry) {
      mappingAt.set(indent, true);
      if (/:\s*[|>][+-]?\d*\s*(#.*)?$/.test(body)) blockIndent = indent;
    } else if (!isItem && mappingAt.get(indent)) {
      return { line: i + 1, message: 'expected “key: value” here (a mapping entry)' };
    }
  }
  return null;
}

function validateHcl(text) {
  const unbalanced = balance(text, ['#', '//']);
  if (unbalanced) return unbalanced;
  const lines = text.split('\n');
  let depth = 0; // inside [ ] or ( ) an expression continues over lines
  let heredoc = null;
  for (let i = 0; i < lines.length; i += 1) {
    const raw = lines[i];
    if (heredoc) { if (raw.trim() === heredoc) heredoc = null; continue; }
    const line = raw.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/(#|\/\/).*$/, '').trim();
    const here = /<<-?(\w+)\s*$/.exec(line);
    if (here) heredoc = here[1];
    if (depth === 0 && line && !/^}/.test(line)
      && !/^([A-Za-z_][\w.-]*|"")\s*(=|:)/.test(line)
      && !/^[A-Za-z_][\w-]*(\s+("")|\s+[A-Za-z_][\w-]*)*\s*\{/.test(line)
      && !/^\/\*|^\*/.test(line)) {
      return { line: i + 1, message: 'expected “name = value” or a “block {”' };
    }
    for (const c of line) {
      if (c === '[' || c === '(') depth += 1;
      else if ((c === ']' || c === ')') && depth > 0) depth -= 1;
    }
  }
  return null;
}
